using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Text.RegularExpressions;
using static TorchSharp.torch;

namespace SlothSharp.Cli;

/// <summary>Option and argument factories whose values are checked while the command line is parsed, so a bad value
/// is a usage error (<c>error: --dtype: unknown dtype 'int8' (bf16, fp16, fp32)</c>, exit 2) before any work starts.
/// Every command uses these for dtypes, devices, sizes and input files.</summary>
public static partial class CliOptions
{
    /// <summary>The dtype names the CLI lists, and what they mean.</summary>
    public static readonly IReadOnlyDictionary<string, ScalarType> DtypeNames = new Dictionary<string, ScalarType>
    {
        ["bf16"] = ScalarType.BFloat16, ["fp16"] = ScalarType.Float16, ["fp32"] = ScalarType.Float32,
    };

    // What ToScalarType accepts: the listed names and PyTorch's long names, in any case.
    private static readonly Dictionary<string, ScalarType> DtypeSpellings = new(StringComparer.OrdinalIgnoreCase)
    {
        ["bf16"] = ScalarType.BFloat16, ["bfloat16"] = ScalarType.BFloat16,
        ["fp16"] = ScalarType.Float16, ["float16"] = ScalarType.Float16,
        ["fp32"] = ScalarType.Float32, ["float32"] = ScalarType.Float32,
    };

    /// <summary><c>--dtype</c> (or another name): bf16, fp16 or fp32. Read the value with <see cref="ToScalarType"/>,
    /// or with <see cref="ToComputeDtype"/> when there is no default (<paramref name="defaultValue"/> null: the
    /// model's own default, bf16 on CUDA and fp32 on the CPU).</summary>
    public static Option<string> Dtype(string name = "--dtype", string description = "dtype: bf16, fp16 or fp32", string? defaultValue = "bf16")
    {
        var option = new Option<string>(name) { Description = description };
        if (defaultValue != null) option.DefaultValueFactory = _ => defaultValue;
        return CheckedBy(option, ToScalarType);
    }

    /// <summary>The ScalarType of a name accepted by <see cref="Dtype"/>.</summary>
    public static ScalarType ToScalarType(string name) =>
        DtypeSpellings.TryGetValue(name, out var t) ? t : throw new CliException("--dtype", $"unknown dtype '{name}' ({string.Join(", ", DtypeNames.Keys)})");

    /// <summary>A compute dtype from a <see cref="Dtype"/> option without a default: null (absent) lets the model choose.</summary>
    public static ScalarType? ToComputeDtype(string? name) => name is null ? null : ToScalarType(name);

    [GeneratedRegex(@"^(cpu|cuda(:[0-9]{1,3})?)$")]
    private static partial Regex DevicePattern();

    /// <summary><c>--device</c>: cpu, cuda or cuda:N, and with <paramref name="allowAuto"/> also auto (CUDA when usable,
    /// else the CPU). The syntax is checked at parse time; whether CUDA is usable is checked by <see cref="ToDevice"/>
    /// when the command runs.</summary>
    public static Option<string> Device(string name = "--device", string? description = null, string defaultValue = "cpu", bool allowAuto = false)
    {
        var option = new Option<string>(name)
        {
            Description = description ?? (allowAuto ? "auto (CUDA when usable), cpu, cuda or cuda:N" : "cpu, cuda or cuda:N"),
            DefaultValueFactory = _ => defaultValue,
        };
        return Checked(option, v => (allowAuto && v == "auto") || DevicePattern().IsMatch(v) ? null
            : $"unknown device '{v}' ({(allowAuto ? "auto, " : "")}cpu, cuda, cuda:N)");
    }

    /// <summary>The TorchSharp device of a value accepted by <see cref="Device"/>; a CUDA device that this machine,
    /// TorchSharp's libtorch or libslothsharp cannot use is a <see cref="CliException"/> on <paramref name="optionName"/>.</summary>
    public static Device ToDevice(string value, string optionName = "--device")
    {
        var cudaUsable = value != "cpu" && cuda.is_available() && CudaDevice.IsAvailable;
        if (value == "auto") return cudaUsable ? CUDA : CPU;
        if (value == "cpu") return CPU;
        if (!DevicePattern().IsMatch(value)) throw new CliException(optionName, $"unknown device '{value}' (cpu, cuda, cuda:N)");
        if (!cudaUsable)
            throw new CliException(optionName, $"{value} needs a CUDA GPU, TorchSharp with a CUDA libtorch and a CUDA build of libslothsharp");
        var device = new Device(value);
        var count = cuda.device_count();
        if (device.index >= count) throw new CliException(optionName, $"{value}: this machine has {count} CUDA device(s)");
        return device;
    }

    /// <summary>A string option that takes one of <paramref name="values"/>, spelled exactly; <paramref name="defaultValue"/>
    /// null: absent is null.</summary>
    public static Option<string> OneOf(string name, string description, string? defaultValue, params string[] values)
    {
        var option = new Option<string>(name) { Description = description };
        if (defaultValue != null) option.DefaultValueFactory = _ => defaultValue;
        return Checked(option, v => values.Contains(v, StringComparer.Ordinal) ? null : $"unknown value '{v}' ({string.Join(", ", values)})");
    }

    /// <summary>The lower-case names of an enum's values, for <see cref="OneOf"/>.</summary>
    public static string[] LowerCaseNames<TEnum>() where TEnum : struct, Enum =>
        Enum.GetNames<TEnum>().Select(n => n.ToLowerInvariant()).ToArray();

    /// <summary>Checks a string option at parse time with the converter the command applies to it when it runs:
    /// a value the converter rejects with a <see cref="CliException"/> is a usage error. One definition of what is
    /// valid, used twice.</summary>
    public static Option<string> CheckedBy<T>(Option<string> option, Func<string, T> convert) =>
        Checked(option, v =>
        {
            try
            {
                convert(v);
                return null;
            }
            catch (CliException e)
            {
                return e.Message;
            }
        });

    /// <summary>An integer option that must be ≥ 1.</summary>
    public static Option<int> PositiveInt(string name, string description, int defaultValue) => IntAtLeast(name, description, defaultValue, 1);

    /// <summary>An optional integer option (null when absent) that must be ≥ 1 when given.</summary>
    public static Option<int?> OptionalPositiveInt(string name, string description) => OptionalIntAtLeast(name, description, 1);

    /// <summary>An integer option that must be ≥ <paramref name="minimum"/> (e.g. 0 for counts that may be zero).</summary>
    public static Option<int> IntAtLeast(string name, string description, int defaultValue, int minimum) =>
        Checked(new Option<int>(name) { Description = description, DefaultValueFactory = _ => defaultValue }, v => BelowMinimum(v, minimum));

    /// <summary>An optional integer option (null when absent) that must be ≥ <paramref name="minimum"/> when given.</summary>
    public static Option<int?> OptionalIntAtLeast(string name, string description, int minimum) =>
        Checked(new Option<int?>(name) { Description = description }, v => v is { } x ? BelowMinimum(x, minimum) : null);

    /// <summary>A floating-point option that must be finite and &gt; 0 (learning rates, scales).</summary>
    public static Option<double> PositiveDouble(string name, string description, double defaultValue) =>
        DoubleInRange(name, description, defaultValue, 0, double.PositiveInfinity, minExclusive: true);

    /// <summary>An optional floating-point option (null when absent) that must be finite and &gt; 0 when given.</summary>
    public static Option<double?> OptionalPositiveDouble(string name, string description) =>
        Checked(new Option<double?>(name) { Description = description },
                v => v is { } x ? OutsideRange(x, 0, double.PositiveInfinity, minExclusive: true, maxExclusive: false) : null);

    /// <summary>A floating-point option that must be finite and ≥ 0 (temperatures, clipping norms where 0 is off).</summary>
    public static Option<double> NonNegativeDouble(string name, string description, double defaultValue) =>
        DoubleInRange(name, description, defaultValue, 0, double.PositiveInfinity);

    /// <summary>A finite floating-point option in the interval from <paramref name="min"/> to <paramref name="max"/>,
    /// each end included unless marked exclusive: dropout [0, 1), top-p (0, 1].</summary>
    public static Option<double> DoubleInRange(string name, string description, double defaultValue, double min, double max,
                                               bool minExclusive = false, bool maxExclusive = false) =>
        Checked(new Option<double>(name) { Description = description, DefaultValueFactory = _ => defaultValue },
                v => OutsideRange(v, min, max, minExclusive, maxExclusive));

    private static string? BelowMinimum(int v, int minimum) =>
        v >= minimum ? null : minimum == 1 ? $"must be a positive integer (got {v})" : $"must be at least {minimum} (got {v})";

    private static string? OutsideRange(double v, double min, double max, bool minExclusive, bool maxExclusive)
    {
        if (double.IsFinite(v) && (minExclusive ? v > min : v >= min) && (maxExclusive ? v < max : v <= max)) return null;
        var wanted = !double.IsPositiveInfinity(max) ? $"in {(minExclusive ? '(' : '[')}{min}, {max}{(maxExclusive ? ')' : ']')}"
            : minExclusive && min == 0 ? "a positive number"
            : minExclusive ? $"a number > {min}" : $"a number >= {min}";
        return string.Create(CultureInfo.InvariantCulture, $"must be {wanted} (got {v})");
    }

    /// <summary>An argument naming a file that must exist (error: <c>&lt;path&gt;: file not found</c>).</summary>
    public static Argument<string> InputFile(string name, string description)
    {
        var argument = new Argument<string>(name) { Description = description };
        argument.Validators.Add(r => RequireExisting(r, Value(r), directory: false));
        return argument;
    }

    /// <summary>An argument naming a folder that must exist (error: <c>&lt;path&gt;: folder not found</c>).</summary>
    public static Argument<string> InputDirectory(string name, string description)
    {
        var argument = new Argument<string>(name) { Description = description };
        argument.Validators.Add(r => RequireExisting(r, Value(r), directory: true));
        return argument;
    }

    /// <summary>An argument naming a file or a folder that must exist (checkpoints: a .safetensors file, a sharded
    /// checkpoint's index or a model folder).</summary>
    public static Argument<string> InputFileOrDirectory(string name, string description)
    {
        var argument = new Argument<string>(name) { Description = description };
        argument.Validators.Add(r =>
        {
            if (Value(r) is { } path && !File.Exists(path) && !Directory.Exists(path)) r.AddError($"{path}: file or folder not found");
        });
        return argument;
    }

    /// <summary>An option naming a file that must exist when given.</summary>
    public static Option<string> InputFileOption(string name, string description, bool required = false)
    {
        var option = new Option<string>(name) { Description = description, Required = required };
        option.Validators.Add(r => RequireExisting(r, TryValue<string>(r, out var v) ? v : null, directory: false));
        return option;
    }

    private static void RequireExisting(SymbolResult r, string? path, bool directory)
    {
        if (path == null) return;
        // The message names the path itself (the formatter sees it starts with a path and adds no other subject).
        if (directory ? !Directory.Exists(path) : !File.Exists(path))
            r.AddError(directory
                ? $"{path}: {(File.Exists(path) ? "is a file, not a folder" : "folder not found")}"
                : $"{path}: {(Directory.Exists(path) ? "is a folder, not a file" : "file not found")}");
    }

    /// <summary>An integer option that must be a power of two in [<paramref name="min"/>, <paramref name="max"/>]
    /// (blocksizes).</summary>
    public static Option<int> PowerOfTwo(string name, string description, int defaultValue, int min, int max) =>
        Checked(new Option<int>(name) { Description = description, DefaultValueFactory = _ => defaultValue },
                v => v < min || v > max || (v & (v - 1)) != 0 ? $"must be a power of two in [{min}, {max}] (got {v})" : null);

    /// <summary>Adds a parse-time check: <paramref name="problem"/> returns what is wrong with a value, or null.</summary>
    private static Option<T> Checked<T>(Option<T> option, Func<T, string?> problem)
    {
        option.Validators.Add(r =>
        {
            if (TryValue<T>(r, out var value) && value is not null && problem(value) is { } error) r.AddError(error);
        });
        return option;
    }

    // The parsed value; false when the token could not be converted (System.CommandLine reports that error itself).
    private static bool TryValue<T>(OptionResult r, out T? value)
    {
        try { value = r.GetValueOrDefault<T>(); return true; }
        catch (InvalidOperationException) { value = default; return false; }
    }

    private static string? Value(ArgumentResult r) => TryValueArg(r, out var v) ? v : null;

    private static bool TryValueArg(ArgumentResult r, out string? value)
    {
        try { value = r.GetValueOrDefault<string>(); return true; }
        catch (InvalidOperationException) { value = null; return false; }
    }
}

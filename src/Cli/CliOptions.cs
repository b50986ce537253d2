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
    /// <summary>The dtype names the CLI accepts, and what they mean.</summary>
    public static readonly IReadOnlyDictionary<string, ScalarType> DtypeNames = new Dictionary<string, ScalarType>
    {
        ["bf16"] = ScalarType.BFloat16, ["fp16"] = ScalarType.Float16, ["fp32"] = ScalarType.Float32,
    };

    /// <summary><c>--dtype</c> (or another name): bf16, fp16 or fp32. Read the value with <see cref="ToScalarType"/>.</summary>
    public static Option<string> Dtype(string name = "--dtype", string description = "dtype: bf16, fp16 or fp32", string? defaultValue = "bf16")
    {
        var option = new Option<string>(name) { Description = description };
        if (defaultValue != null) option.DefaultValueFactory = _ => defaultValue;
        option.Validators.Add(r =>
        {
            if (TryValue<string>(r, out var value) && value != null && !DtypeNames.ContainsKey(value))
                r.AddError($"unknown dtype '{value}' ({string.Join(", ", DtypeNames.Keys)})");
        });
        return option;
    }

    /// <summary>The ScalarType of a name accepted by <see cref="Dtype"/>.</summary>
    public static ScalarType ToScalarType(string name) =>
        DtypeNames.TryGetValue(name, out var t) ? t : throw new CliException("--dtype", $"unknown dtype '{name}' ({string.Join(", ", DtypeNames.Keys)})");

    [GeneratedRegex(@"^(cpu|cuda(:[0-9]{1,3})?)$")]
    private static partial Regex DevicePattern();

    /// <summary><c>--device</c>: cpu, cuda or cuda:N. The syntax is checked at parse time; whether CUDA is usable is
    /// checked by <see cref="ToDevice"/> when the command runs.</summary>
    public static Option<string> Device(string name = "--device", string description = "cpu, cuda or cuda:N", string defaultValue = "cpu")
    {
        var option = new Option<string>(name) { Description = description, DefaultValueFactory = _ => defaultValue };
        option.Validators.Add(r =>
        {
            if (TryValue<string>(r, out var value) && value != null && !DevicePattern().IsMatch(value)) r.AddError($"unknown device '{value}' (cpu, cuda, cuda:N)");
        });
        return option;
    }

    /// <summary>The TorchSharp device of a value accepted by <see cref="Device"/>; a CUDA device that this machine,
    /// TorchSharp's libtorch or libslothsharp cannot use is a <see cref="CliException"/> on <paramref name="optionName"/>.</summary>
    public static Device ToDevice(string value, string optionName = "--device")
    {
        if (value == "cpu") return CPU;
        if (!DevicePattern().IsMatch(value)) throw new CliException(optionName, $"unknown device '{value}' (cpu, cuda, cuda:N)");
        if (!cuda.is_available() || !CudaDevice.IsAvailable)
            throw new CliException(optionName, $"{value} needs a CUDA GPU, TorchSharp with a CUDA libtorch and a CUDA build of libslothsharp");
        var device = new Device(value);
        var count = cuda.device_count();
        if (device.index >= count) throw new CliException(optionName, $"{value}: this machine has {count} CUDA device(s)");
        return device;
    }

    /// <summary>An integer option that must be ≥ 1.</summary>
    public static Option<int> PositiveInt(string name, string description, int defaultValue) =>
        WithMinimum(new Option<int>(name) { Description = description, DefaultValueFactory = _ => defaultValue }, 1);

    /// <summary>An optional integer option (null when absent) that must be ≥ 1 when given.</summary>
    public static Option<int?> OptionalPositiveInt(string name, string description)
    {
        var option = new Option<int?>(name) { Description = description };
        option.Validators.Add(r =>
        {
            if (TryValue<int?>(r, out var value) && value is { } v && v < 1) r.AddError($"must be a positive integer (got {v})");
        });
        return option;
    }

    /// <summary>An integer option that must be ≥ <paramref name="minimum"/> (e.g. 0 for counts that may be zero).</summary>
    public static Option<int> IntAtLeast(string name, string description, int defaultValue, int minimum) =>
        WithMinimum(new Option<int>(name) { Description = description, DefaultValueFactory = _ => defaultValue }, minimum);

    /// <summary>A floating-point option that must be finite and &gt; 0 (learning rates, scales).</summary>
    public static Option<double> PositiveDouble(string name, string description, double defaultValue)
    {
        var option = new Option<double>(name) { Description = description, DefaultValueFactory = _ => defaultValue };
        option.Validators.Add(r =>
        {
            if (!TryValue<double>(r, out var v)) return;
            if (!double.IsFinite(v) || v <= 0) r.AddError($"must be a positive number (got {v.ToString(CultureInfo.InvariantCulture)})");
        });
        return option;
    }

    /// <summary>An optional floating-point option (null when absent) that must be finite and &gt; 0 when given.</summary>
    public static Option<double?> OptionalPositiveDouble(string name, string description)
    {
        var option = new Option<double?>(name) { Description = description };
        option.Validators.Add(r =>
        {
            if (TryValue<double?>(r, out var value) && value is { } v && (!double.IsFinite(v) || v <= 0))
                r.AddError($"must be a positive number (got {v.ToString(CultureInfo.InvariantCulture)})");
        });
        return option;
    }

    /// <summary>A floating-point option in [<paramref name="min"/>, <paramref name="max"/>] (dropout, top-p).</summary>
    public static Option<double> DoubleInRange(string name, string description, double defaultValue, double min, double max)
    {
        var option = new Option<double>(name) { Description = description, DefaultValueFactory = _ => defaultValue };
        option.Validators.Add(r =>
        {
            if (!TryValue<double>(r, out var v)) return;
            if (!(v >= min && v <= max))
                r.AddError(string.Create(CultureInfo.InvariantCulture, $"must be between {min} and {max} (got {v})"));
        });
        return option;
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
    public static Option<int> PowerOfTwo(string name, string description, int defaultValue, int min, int max)
    {
        var option = new Option<int>(name) { Description = description, DefaultValueFactory = _ => defaultValue };
        option.Validators.Add(r =>
        {
            if (!TryValue<int>(r, out var v)) return;
            if (v < min || v > max || (v & (v - 1)) != 0) r.AddError($"must be a power of two in [{min}, {max}] (got {v})");
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

    private static Option<int> WithMinimum(Option<int> option, int minimum)
    {
        option.Validators.Add(r =>
        {
            if (!TryValue<int>(r, out var v)) return;
            if (v < minimum)
                r.AddError(minimum == 1 ? $"must be a positive integer (got {v})" : $"must be at least {minimum} (got {v})");
        });
        return option;
    }
}

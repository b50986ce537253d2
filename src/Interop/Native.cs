using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace SlothSharp.Interop;

/// <summary>The one place that loads libslothsharp: it finds the library, checks its ABI version and turns statuses
/// into exceptions. The generated part (Generated/NativeMethods.g.cs) holds the private P/Invokes and one checked
/// method per export (<c>Native.Nf4Quantize(...)</c>), each of which calls <see cref="EnsureLoaded"/> and
/// <see cref="Check"/>: callers never do either by hand.</summary>
public static partial class Native
{
    /// <summary>Environment variable naming the library file (or its folder), ahead of every other location.</summary>
    public const string PathVariable = "SLOTHSHARP_NATIVE_PATH";

    private const string FileName = "libslothsharp.so";
    private static readonly Lazy<LoadResult> Loaded = new(LoadAndCheck, LazyThreadSafetyMode.ExecutionAndPublication);
    private static readonly List<string> Tried = [];
    private static string? _resolvedPath;

    private sealed record LoadResult(string Path, Exception? Error);

    [ModuleInitializer]
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA2255", Justification = "The resolver must be registered before the first P/Invoke.")]
    internal static void RegisterResolver() =>
        NativeLibrary.SetDllImportResolver(typeof(Native).Assembly, Resolve);

    /// <summary>Full path of the loaded library (loads it if needed).</summary>
    public static string LibraryPath
    {
        get
        {
            EnsureLoaded();
            return Loaded.Value.Path;
        }
    }

    /// <summary>Loads the library once and verifies <c>sloth_abi_version()</c>; throws with what to do otherwise.</summary>
    public static void EnsureLoaded()
    {
        if (Loaded.Value.Error is { } error) throw error;
    }

    /// <summary>The calling thread's last native error message ("" if none).</summary>
    internal static string LastErrorMessage => Marshal.PtrToStringUTF8(LastError()) ?? "";

    /// <summary>Throws the typed exception for a non-OK status, with the thread's native message. Called by the
    /// generated checked methods (and by tests that obtained a status through a <c>TryX</c> method).</summary>
    internal static void Check(SlothStatus status)
    {
        if (status == SlothStatus.Ok) return;
        var message = LastErrorMessage;
        if (message.Length == 0) message = "libslothsharp returned an error without a message";
        throw status switch
        {
            SlothStatus.ErrorInvalidArgument => new SlothInvalidArgumentException(message),
            SlothStatus.ErrorNoCuda => new SlothNoCudaException(message),
            SlothStatus.ErrorCuda => new SlothCudaException(message),
            SlothStatus.ErrorUnsupported => new SlothUnsupportedException(message),
            SlothStatus.ErrorInternal => new SlothInternalException(message),
            _ => new SlothException(status, message),
        };
    }

    private static LoadResult LoadAndCheck()
    {
        // The same search the P/Invoke resolver does (NativeLibrary.Load would bypass the resolver).
        var handle = Resolve(LibraryName, typeof(Native).Assembly, null);
        if (handle == 0)
        {
            string[] tried;
            lock (Tried) tried = Tried.ToArray();
            return new LoadResult("", new DllNotFoundException(
                $"SlothSharp could not load {FileName}. Tried: {string.Join(", ", tried)}. " +
                $"Build it with `./build.sh native` (or reference the SlothSharp NuGet package, which ships it in " +
                $"runtimes/linux-x64/native), or set {PathVariable} to its path."));
        }
        var path = _resolvedPath ?? FileName;
        int version;
        try
        {
            version = sloth_abi_version();  // the raw import: EnsureLoaded is what is being computed here
        }
        catch (EntryPointNotFoundException e)
        {
            return new LoadResult(path, new InvalidOperationException(
                $"{path} is not a libslothsharp (no sloth_abi_version export). Rebuild with `./build.sh native`.", e));
        }
        if (version != SlothConstants.AbiVersion)
            return new LoadResult(path, new InvalidOperationException(
                $"{path} has ABI version {version}, but this SlothSharp.Interop expects {SlothConstants.AbiVersion}. " +
                "The native library and the managed assemblies come from different builds: rebuild both with " +
                "`./build.sh build`, or use matching package versions."));
        GC.KeepAlive(handle);
        return new LoadResult(path, null);
    }

    private static nint Resolve(string name, Assembly assembly, DllImportSearchPath? searchPath)
    {
        if (name != LibraryName) return 0;
        foreach (var candidate in Candidates(assembly))
        {
            lock (Tried) Tried.Add(candidate);
            if (File.Exists(candidate) && NativeLibrary.TryLoad(candidate, out var handle))
            {
                _resolvedPath = Path.GetFullPath(candidate);
                return handle;
            }
        }
        lock (Tried) Tried.Add($"the system search path ({FileName})");
        if (!NativeLibrary.TryLoad(FileName, assembly, searchPath, out var h)) return 0;
        _resolvedPath = FileName + " (from the system search path)";
        return h;
    }

    private static IEnumerable<string> Candidates(Assembly assembly)
    {
        var fromEnv = Environment.GetEnvironmentVariable(PathVariable);
        if (!string.IsNullOrEmpty(fromEnv))
            yield return Directory.Exists(fromEnv) ? Path.Combine(fromEnv, FileName) : fromEnv;
        var dirs = new[] { AppContext.BaseDirectory, Path.GetDirectoryName(assembly.Location) ?? "" }
            .Where(d => d.Length > 0).Distinct();
        foreach (var dir in dirs)
        {
            yield return Path.Combine(dir, "runtimes", "linux-x64", "native", FileName);
            yield return Path.Combine(dir, FileName);
        }
    }
}

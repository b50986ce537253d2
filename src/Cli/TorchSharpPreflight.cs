using System.Runtime.InteropServices;
using System.Text;

namespace SlothSharp.Cli;

/// <summary>The one start-up failure the CLI cannot explain through TorchSharp: TorchSharp 0.107's native glue
/// (libLibTorchSharp.so) needs <see cref="RequiredVersion"/> from libstdc++ (GCC ≥ 13). On an older host TorchSharp
/// prints a long trace blaming a missing libtorch package (and first copies libtorch next to the app); this check
/// runs before the first TorchSharp call and says what is really missing.</summary>
internal static class TorchSharpPreflight
{
    public const string RequiredVersion = "GLIBCXX_3.4.32";

    private static readonly string[] StandardLocations =
        ["/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib64/libstdc++.so.6", "/usr/lib/libstdc++.so.6"];

    /// <summary>Null when TorchSharp can load (or this is not Linux); otherwise the CLI's one error line.</summary>
    public static string? Check()
    {
        if (!OperatingSystem.IsLinux()) return null;
        var lib = CurrentLibStdCxx();
        if (lib == null || HasSymbolVersion(lib, RequiredVersion)) return null;
        // This libstdc++ lacks the version: confirm that the glue really cannot load (a later TorchSharp may not need it).
        var glue = FindLibTorchSharp();
        if (glue != null && NativeLibrary.TryLoad(glue, out _)) return null;
        return Message(lib);
    }

    /// <summary>Whether a failure (for example TorchSharp's own load error) is explained by an old libstdc++.</summary>
    public static string? Explain(Exception e)
    {
        if (!OperatingSystem.IsLinux()) return null;
        var text = e.ToString();
        if (!text.Contains("LibTorchSharp", StringComparison.OrdinalIgnoreCase) && !text.Contains("libtorch", StringComparison.OrdinalIgnoreCase))
            return null;
        var lib = CurrentLibStdCxx();
        return lib != null && !HasSymbolVersion(lib, RequiredVersion) ? Message(lib) : null;
    }

    public static string Message(string lib) =>
        $"error: {lib}: TorchSharp needs {RequiredVersion} (the libstdc++ of GCC ≥ 13), which this libstdc++ lacks; " +
        "run it through ./build.sh sloth … or use a distribution with GCC ≥ 13's libstdc++";

    /// <summary>The libstdc++ this process uses: the one mapped into it, else the first at a standard location.</summary>
    public static string? CurrentLibStdCxx()
    {
        try
        {
            if (LibStdCxxInMaps(File.ReadAllText("/proc/self/maps")) is { } mapped && File.Exists(mapped)) return mapped;
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return StandardLocations.FirstOrDefault(File.Exists);
    }

    /// <summary>The path of libstdc++ in the text of a /proc/PID/maps file, or null.</summary>
    public static string? LibStdCxxInMaps(string maps)
    {
        foreach (var line in maps.Split('\n'))
        {
            var slash = line.IndexOf('/');
            if (slash < 0) continue;
            var path = line[slash..].Trim();
            if (Path.GetFileName(path).StartsWith("libstdc++.so", StringComparison.Ordinal)) return path;
        }
        return null;
    }

    /// <summary>Whether a shared library defines a symbol version (its name, NUL-terminated, in the string table).</summary>
    public static bool HasSymbolVersion(string libraryPath, string version)
    {
        var needle = Encoding.ASCII.GetBytes(version + "\0");
        var bytes = File.ReadAllBytes(libraryPath);
        return bytes.AsSpan().IndexOf(needle) >= 0;
    }

    private static string? FindLibTorchSharp()
    {
        const string name = "libLibTorchSharp.so";
        string[] candidates =
        [
            Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", name),
            Path.Combine(AppContext.BaseDirectory, name),
        ];
        return candidates.FirstOrDefault(File.Exists);
    }
}

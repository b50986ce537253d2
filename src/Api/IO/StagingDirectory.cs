namespace SlothSharp.IO;

/// <summary>
/// A temporary sibling of a directory about to be written (".NAME.tmp-PID-GUID" in the same parent, so the final
/// rename stays on one file system): the caller fills <see cref="Path"/>, then moves it (or its files) into place; a
/// staging folder left behind by a failure is removed on <see cref="Dispose"/>. A reader never sees a half-written
/// checkpoint, adapter or training state.
/// </summary>
internal sealed class StagingDirectory : IDisposable
{
    public string Path { get; }

    private StagingDirectory(string path) => Path = path;

    /// <summary>Creates the staging folder next to <paramref name="finalDirectory"/> (and the parent, if missing).</summary>
    public static StagingDirectory Beside(string finalDirectory)
    {
        var full = System.IO.Path.GetFullPath(finalDirectory);
        var parent = System.IO.Path.GetDirectoryName(full) ?? ".";
        Directory.CreateDirectory(parent);
        var path = System.IO.Path.Combine(parent, $".{System.IO.Path.GetFileName(full)}.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(path);
        return new StagingDirectory(path);
    }

    /// <summary>Renames the staging folder to <paramref name="finalDirectory"/>, which must not exist.</summary>
    public void MoveTo(string finalDirectory) => Directory.Move(Path, System.IO.Path.GetFullPath(finalDirectory));

    public void Dispose()
    {
        if (Directory.Exists(Path)) Directory.Delete(Path, recursive: true);
    }
}

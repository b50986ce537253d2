using System.Runtime.InteropServices;

namespace SlothSharp.Tests;

/// <summary>The few CUDA driver calls the tests need to capture and replay a graph (TorchSharp exposes no streams).
/// The driver is the one layer shared by PyTorch's CUDA runtime and libslothsharp's static one.</summary>
internal static partial class CudaDriver
{
    private const string Lib = "libcuda.so.1";

    [LibraryImport(Lib)] private static partial int cuStreamCreate(out nint stream, uint flags);
    [LibraryImport(Lib, EntryPoint = "cuStreamDestroy_v2")] private static partial int cuStreamDestroy(nint stream);
    [LibraryImport(Lib, EntryPoint = "cuStreamBeginCapture_v2")] private static partial int cuStreamBeginCapture(nint stream, int mode);
    [LibraryImport(Lib)] private static partial int cuStreamEndCapture(nint stream, out nint graph);
    [LibraryImport(Lib)] private static partial int cuGraphInstantiateWithFlags(out nint exec, nint graph, ulong flags);
    [LibraryImport(Lib)] private static partial int cuGraphLaunch(nint exec, nint stream);
    [LibraryImport(Lib)] private static partial int cuGraphGetNodes(nint graph, nint nodes, ref nuint count);
    [LibraryImport(Lib)] private static partial int cuStreamSynchronize(nint stream);
    [LibraryImport(Lib)] private static partial int cuGraphExecDestroy(nint exec);
    [LibraryImport(Lib)] private static partial int cuGraphDestroy(nint graph);

    private const int CaptureModeRelaxed = 2;
    private const uint StreamNonBlocking = 1;

    private static void Check(int result, string call)
    {
        if (result != 0) throw new InvalidOperationException($"{call} failed with CUresult {result}");
    }

    /// <summary>Captures what <paramref name="enqueue"/> puts on a fresh stream into a graph, then replays it
    /// <paramref name="replays"/> times. Returns the number of nodes the graph captured.</summary>
    public static int CaptureAndReplay(Action<nint> enqueue, int replays, Action? beforeReplay = null)
    {
        Check(cuStreamCreate(out var stream, StreamNonBlocking), "cuStreamCreate");
        nint graph = 0, exec = 0;
        try
        {
            Check(cuStreamBeginCapture(stream, CaptureModeRelaxed), "cuStreamBeginCapture");
            enqueue(stream);
            Check(cuStreamEndCapture(stream, out graph), "cuStreamEndCapture");
            nuint count = 0;
            Check(cuGraphGetNodes(graph, 0, ref count), "cuGraphGetNodes");
            Check(cuGraphInstantiateWithFlags(out exec, graph, 0), "cuGraphInstantiateWithFlags");
            for (var i = 0; i < replays; i++)
            {
                beforeReplay?.Invoke();
                Check(cuGraphLaunch(exec, stream), "cuGraphLaunch");
                Check(cuStreamSynchronize(stream), "cuStreamSynchronize");
            }
            return (int)count;
        }
        finally
        {
            if (exec != 0) cuGraphExecDestroy(exec);
            if (graph != 0) cuGraphDestroy(graph);
            cuStreamDestroy(stream);
        }
    }
}

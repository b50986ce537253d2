using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace SlothSharp.Training;

/// <summary>
/// Makes CUDA training repeatable run to run (seen on an H100 without it: two runs with the same seed and data drift
/// apart from step 3 by bf16 rounding, and the difference grows to ~0.1 in the loss by step 100). PyTorch's
/// deterministic mode picks deterministic kernels (attention backward included) and fails where none exists; cuBLAS needs a fixed workspace configuration, read from the environment when its handle is created.
/// </summary>
public static class Determinism
{
    /// <summary>The cuBLAS setting PyTorch documents for deterministic GEMMs.</summary>
    public const string CublasWorkspaceConfig = ":4096:8";

    [DllImport("libc", EntryPoint = "setenv")]
    private static extern int SetEnv(string name, string value, int overwrite);

    // TorchSharp 0.107 declares use_deterministic_algorithms but does not implement it: call libtorch's
    // at::globalContext().setDeterministicAlgorithms(bool, bool warn_only) directly (Itanium C++ ABI names; `this`
    // is the first argument). libtorch_cpu is the library every libtorch build (CPU or CUDA) has.
    [DllImport("libtorch_cpu", EntryPoint = "_ZN2at13globalContextEv")]
    private static extern nint GlobalContext();

    [DllImport("libtorch_cpu", EntryPoint = "_ZN2at7Context26setDeterministicAlgorithmsEbb")]
    private static extern void SetDeterministicAlgorithms(nint context, [MarshalAs(UnmanagedType.U1)] bool enabled,
                                                          [MarshalAs(UnmanagedType.U1)] bool warnOnly);

    [DllImport("libtorch_cpu", EntryPoint = "_ZNK2at7Context23deterministicAlgorithmsEv")]
    [return: MarshalAs(UnmanagedType.U1)]
    private static extern bool DeterministicAlgorithms(nint context);

    [DllImport("libtorch_cpu", EntryPoint = "_ZNK2at7Context31deterministicAlgorithmsWarnOnlyEv")]
    [return: MarshalAs(UnmanagedType.U1)]
    private static extern bool DeterministicAlgorithmsWarnOnly(nint context);

    /// <summary>The process's current setting (enabled, warn-only), to restore it later.</summary>
    public static (bool Enabled, bool WarnOnly) Current
    {
        get
        {
            var c = GlobalContext();
            return (DeterministicAlgorithms(c), DeterministicAlgorithmsWarnOnly(c));
        }
    }

    /// <summary>Puts back a setting read from <see cref="Current"/>.</summary>
    public static void Restore((bool Enabled, bool WarnOnly) setting) =>
        SetDeterministicAlgorithms(GlobalContext(), setting.Enabled, setting.WarnOnly);

    /// <summary>Sets CUBLAS_WORKSPACE_CONFIG (unless already set) and turns PyTorch's deterministic mode on. Not warn-only: in that mode cuDNN attention's backward stays
    /// non-deterministic (seen on the H100), so an op with no deterministic kernel fails loudly instead.
    /// Call it before the first CUDA GEMM of the process for cuBLAS to honour it; later calls still fix the rest.
    /// Returns false, with the reason, when this libtorch does not export the switch.</summary>
    public static bool Enable(out string? problem)
    {
        if (string.IsNullOrEmpty(Environment.GetEnvironmentVariable("CUBLAS_WORKSPACE_CONFIG")))
        {
            Environment.SetEnvironmentVariable("CUBLAS_WORKSPACE_CONFIG", CublasWorkspaceConfig);
            // .NET keeps its own environment copy on Unix; cuBLAS reads libc's.
            if (!OperatingSystem.IsWindows()) SetEnv("CUBLAS_WORKSPACE_CONFIG", CublasWorkspaceConfig, 0);
        }
        try
        {
            _ = zeros(1);  // makes sure TorchSharp has loaded libtorch
            SetDeterministicAlgorithms(GlobalContext(), true, false);
            problem = null;
            return true;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            problem = $"deterministic mode is unavailable ({e.Message}); a resumed CUDA run may drift from an uninterrupted one by rounding";
            return false;
        }
    }
}

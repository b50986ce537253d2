using SlothSharp.Interop;
using TorchSharp;
using static TorchSharp.torch;

namespace SlothSharp.Gguf;

/// <summary>
/// ggml's Q8_0, Q4_K, Q5_K and Q6_K quantizers in libslothsharp (<c>sloth_ggml_quantize</c>): one per-block code path
/// compiled for the CPU and for CUDA, byte-identical to the C# quantizers of <see cref="GgmlQuantizer"/> (and so to
/// llama.cpp's reference quantizers). The exporter uses it to quantize on a GPU (<see cref="GgufExportOptions.QuantizeDevice"/>).
/// The float32 input lives on the host, so a GPU export pays the copies both ways and CUDA's start-up: on the H100
/// machine's 16 cores the C# path was faster at the 1B shape (quantize stage 2.3 s against 5.9 s,
/// bench/results/2026-12-06-h100-round10); the GPU pays on hosts with few cores. The C# path stays the default.
/// </summary>
internal static class NativeGgmlQuantizer
{
    /// <summary>Whether <paramref name="type"/> is one of the four types the native quantizer implements.</summary>
    public static bool Supports(GgmlType type) => type is GgmlType.Q8_0 or GgmlType.Q4_K or GgmlType.Q5_K or GgmlType.Q6_K;

    /// <summary>
    /// Quantizes a float32 tensor of whole rows of <paramref name="rowLength"/> values (contiguous, row-major; on the
    /// CPU or a CUDA device; the computation runs where the tensor is) into <paramref name="destination"/> (host
    /// memory, exactly rows × <see cref="GgmlTypeInfo.RowBytes"/> bytes). A CUDA call synchronizes: it returns once
    /// the bytes have been copied back. A CUDA tensor holding NaN or ±infinity is quantized on the CPU, so the bytes
    /// are the CPU's (and llama.cpp's) whatever the input.
    /// </summary>
    public static void Quantize(Tensor x, long rowLength, GgmlType type, Span<byte> destination)
    {
        ArgumentNullException.ThrowIfNull(x);
        var rows = CheckShape(x.numel(), rowLength, type, destination.Length);
        TensorInterop.RequireDtype(x, ScalarType.Float32, nameof(x));
        TensorInterop.RequireContiguous(x, nameof(x));
        var device = TensorInterop.DeviceSelector(x);
        if (rows == 0) return;
        if (device < 0)
        {
            unsafe
            {
                fixed (byte* dst = destination)
                    Native.GgmlQuantize(TensorInterop.DataPtr(x), rows, rowLength, (int)type, (nint)dst, -1, 0);
            }
            GC.KeepAlive(x);
            return;
        }
        // NaN or infinite input goes to the CPU twin: on the H100 the device's canonical NaNs gave other Q4_K/Q5_K bytes
        // than x86 at a NaN-led sub-block even with x86's NaN results chosen by integer tests (ggml_quants.h;
        // bench/results/2026-12-06-h100-round10), and the header leaves the device's bytes for NaN input unspecified.
        // One reduction and one small read; finite input (subnormal sub-blocks included) agrees on the GPU.
        bool finite;
        using (var all = isfinite(x).all()) finite = all.item<bool>();
        if (!finite)
        {
            using var onCpu = x.cpu();
            Quantize(onCpu, rowLength, type, destination);
            return;
        }
        using var bytes = empty(destination.Length, ScalarType.Byte, x.device);
        Native.GgmlQuantize(TensorInterop.DataPtr(x), rows, rowLength, (int)type, TensorInterop.DataPtr(bytes), device, 0);
        using var host = bytes.cpu();
        unsafe
        {
            new ReadOnlySpan<byte>((void*)TensorInterop.DataPtr(host), destination.Length).CopyTo(destination);
        }
        GC.KeepAlive(host);
    }

    /// <summary>Quantizes host floats on <paramref name="device"/> (CPU: in place; CUDA: copied there and the bytes
    /// copied back) into <paramref name="destination"/>, as <see cref="Quantize(Tensor, long, GgmlType, Span{byte})"/>.</summary>
    public static void Quantize(ReadOnlySpan<float> data, long rowLength, GgmlType type, Span<byte> destination, Device device)
    {
        ArgumentNullException.ThrowIfNull(device);
        var rows = CheckShape(data.Length, rowLength, type, destination.Length);
        if (rows == 0) return;
        switch (device.type)
        {
            case DeviceType.CPU:
                unsafe
                {
                    fixed (float* src = data)
                    fixed (byte* dst = destination)
                        Native.GgmlQuantize((nint)src, rows, rowLength, (int)type, (nint)dst, -1, 0);
                }
                return;
            case DeviceType.CUDA:
                using (var staging = empty(data.Length, ScalarType.Float32))
                {
                    unsafe
                    {
                        data.CopyTo(new Span<float>((void*)TensorInterop.DataPtr(staging), data.Length));
                    }
                    using var onDevice = staging.to(device);
                    Quantize(onDevice, rowLength, type, destination);
                }
                return;
            default:
                throw new ArgumentException($"the GGUF quantizer runs on the CPU or a CUDA device; got {device}", nameof(device));
        }
    }

    /// <summary>Checks the type, the row length and the destination's size; returns the row count.</summary>
    private static long CheckShape(long count, long rowLength, GgmlType type, int destinationLength)
    {
        if (!Supports(type))
            throw new ArgumentException($"the native quantizer implements Q8_0, Q4_K, Q5_K and Q6_K; {type} goes through GgmlQuantizer", nameof(type));
        var block = GgmlTypeInfo.BlockSize(type);
        if (rowLength <= 0 || rowLength % block != 0)
            throw new ArgumentException($"row length {rowLength} is not a positive multiple of {type}'s block size {block}", nameof(rowLength));
        if (count % rowLength != 0)
            throw new ArgumentException($"{count} elements are not whole rows of {rowLength}", nameof(rowLength));
        var rows = count / rowLength;
        var bytes = rows * GgmlTypeInfo.RowBytes(type, rowLength);
        if (destinationLength != bytes)
            throw new ArgumentException($"{rows} rows of {type} take {bytes} bytes; the destination holds {destinationLength}", "destination");
        return rows;
    }
}

using System.Diagnostics;
using System.Globalization;
using System.Text;
using SlothSharp.Interop;
using SlothSharp.Models;
using SlothSharp.Ops;
using static TorchSharp.torch;

namespace SlothSharp.Bench;

/// <summary>
/// <c>--suite softcap</c>: Gemma 2's soft-capped attention on one layer of the published 2B shape (8 × 1024 tokens,
/// 8 query heads over 4 KV heads of 256, causal), forward + backward in bfloat16, the two ways SlothSharp computes it:
/// transformers' eager expression (the reference kernels; every [B, H, T, T] intermediate kept for backward) and
/// <see cref="SoftcapAttention"/> as blocks of query rows (the scores made again in backward) and as the one-pass
/// (flash-style) kernels, opt-in (<see cref="SoftcapAttentionMethod.Flash"/>). Each way
/// runs in a child process of its own so that its peak device memory is its own. The measure that chooses which one
/// the fused kernel set uses (issue 22: "a mask costs memory, so measure and choose").
/// </summary>
internal static class SoftcapSuite
{
    private const string Prefix = "SOFTCAP ";

    public static int Run(string results, string device)
    {
        var report = new StringBuilder($"softcap attention, Gemma-2-2B layer shape, bf16, forward + backward, on {device}\n");
        var ok = true;
        foreach (var method in new[] { "eager", "blocks", "flash" })
        {
            var (good, line, _) = StepSuite.Child(["--results", results, "--suite", "softcap-row", "--method", method], Prefix);
            ok &= good;
            var text = $"  {method,-6}: {(good ? line : "FAILED")}";
            Console.WriteLine(text);
            report.AppendLine(text);
        }
        File.WriteAllText(Path.Combine(results, "softcap.txt"), report.ToString());
        return ok ? 0 : 1;
    }

    public static int RunRow(string method)
    {
        var memory = new StepSuite.MemoryWatch(true);
        const long b = 8, heads = 8, kvHeads = 4, t = 1024, d = 256;
        var scale = 1 / Math.Sqrt(256);   // query_pre_attn_scalar 256
        const double cap = 50;
        manual_seed(1);
        using var q = randn(b, heads, t, d, ScalarType.BFloat16, CUDA).requires_grad_();
        using var k0 = randn(b, kvHeads, t, d, ScalarType.BFloat16, CUDA).requires_grad_();
        using var v0 = randn(b, kvHeads, t, d, ScalarType.BFloat16, CUDA).requires_grad_();
        using var allowed = LayerContext.CausalMask(t, t, CUDA);
        using var dout = randn(b, heads, t, d, ScalarType.BFloat16, CUDA);
        // eager: transformers' expression (the reference set); blocks / flash: SoftcapAttention with that method.
        Func<Tensor, Tensor, Tensor, Tensor> attention = method switch
        {
            "eager" => (q1, k1, v1) => DecoderKernels.Reference.SoftcapAttention(q1, k1, v1, allowed, scale, cap),
            "blocks" => (q1, k1, v1) => SoftcapAttention.Apply(q1, k1, v1, allowed, scale, cap, SoftcapAttentionMethod.Blocks),
            "flash" => (q1, k1, v1) => SoftcapAttention.Apply(q1, k1, v1, allowed, scale, cap, SoftcapAttentionMethod.Flash),
            _ => throw new ArgumentException($"--method {method}: eager, blocks or flash"),
        };
        double Once()
        {
            using var scope = NewDisposeScope();
            Native.CudaSynchronize(0);
            var clock = Stopwatch.StartNew();
            var k = k0.unsqueeze(2).expand(b, kvHeads, heads / kvHeads, t, d).reshape(b, heads, t, d);
            var v = v0.unsqueeze(2).expand(b, kvHeads, heads / kvHeads, t, d).reshape(b, heads, t, d);
            var y = attention(q, k, v);
            memory.Poll();   // the forward's graph holds what backward needs: the peak is here or inside backward
            y.backward([dout]);
            Native.CudaSynchronize(0);
            memory.Poll();
            foreach (var x in new[] { q, k0, v0 }) x.grad = null;
            return clock.Elapsed.TotalMilliseconds;
        }
        for (var i = 0; i < 3; i++) Once();
        var times = Enumerable.Range(0, 10).Select(_ => Once()).Order().ToArray();
        Console.WriteLine(Prefix + string.Create(CultureInfo.InvariantCulture,
            $"median {times[5]:F2} ms, best {times[0]:F2} ms (10 runs), peak {memory.PeakGb:F2} GB above idle (inputs and gradients included)"));
        return 0;
    }
}

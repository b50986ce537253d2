using NUnit.Framework;
using SlothSharp.Ops;
using static TorchSharp.torch;

namespace SlothSharp.Tests;

/// <summary>Grouped-query attention that keeps only q and the unexpanded k and v and runs SDPA again in backward
/// (<see cref="GqaAttention"/>) against the same expression through ordinary autograd (K/V repeated per group, then
/// SDPA): the output and the gradients of q, k and v bit for bit (SDPA's forward is deterministic, so backward sees
/// the same values), causal, with a bool mask and without one, grouped and not; plus the argument checks.</summary>
[TestFixture("cpu")]
[TestFixture("cuda", Category = "Gpu")]
public class GqaAttentionTests(string deviceName) : DeviceFixture(deviceName)
{
    private Tensor Input(long[] shape, ScalarType dtype, ulong seed) =>
        randn(shape, generator: new Generator(seed)).to(dtype).to(Dev).requires_grad_();

    [TestCase(3, "causal", ScalarType.Float32)]
    [TestCase(3, "mask", ScalarType.Float32)]
    [TestCase(3, "none", ScalarType.Float32)]
    [TestCase(1, "causal", ScalarType.Float32)]
    [TestCase(2, "causal", ScalarType.BFloat16)]
    public void MatchesSdpaOnExpandedHeadsWithItsGradients(int groups, string masking, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        const long b = 2, kv = 2, t = 9, d = 16;
        var h = kv * groups;
        var q = Input([b, h, t, d], dtype, 1);
        var k = Input([b, kv, t, d], dtype, 2);
        var v = Input([b, kv, t, d], dtype, 3);
        var gradOut = randn([b, h, t, d], generator: new Generator(4)).to(dtype).to(Dev);
        Tensor? mask = null;
        if (masking == "mask")
        {
            // Causal with two padding keys in row 1; every query keeps its own key.
            var pos = arange(t, device: Dev);
            var allowed = pos.view(1, 1, 1, t).le(pos.view(1, 1, t, 1)).expand(b, 1, t, t).clone();
            allowed[1, 0, TensorIndex.Colon, TensorIndex.Slice(0, 2)] = tensor(false);
            mask = allowed | pos.view(1, 1, 1, t).eq(pos.view(1, 1, t, 1));
        }
        var causal = masking == "causal";

        var y = GqaAttention.Apply(q, k, v, mask, causal);
        var grads = autograd.grad([y], [q, k, v], [gradOut]);
        var yRef = GqaAttention.Reference(q, k, v, mask, causal);
        var gradsRef = autograd.grad([yRef], [q, k, v], [gradOut]);

        Assert.That(y.shape, Is.EqualTo(new[] { b, h, t, d }));
        Assert.That(TestEnv.BitEqual(y, yRef), Is.True, "output");
        string[] names = ["q", "k", "v"];
        for (var i = 0; i < 3; i++)
            Assert.That(TestEnv.BitEqual(grads[i], gradsRef[i]), Is.True, $"d{names[i]}: relative error {TestEnv.RelativeError(grads[i], gradsRef[i]):E3}");
    }

    [Test]
    public void KeepsNoGraphWithoutGradients()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var q = randn([1, 4, 5, 8], device: Dev);
        var kv = randn([1, 2, 5, 8], device: Dev);
        var y = GqaAttention.Apply(q, kv, kv, null, true);
        Assert.That(y.requires_grad, Is.False);
        Assert.That(TestEnv.BitEqual(y, GqaAttention.Reference(q, kv, kv, null, true)), Is.True);
    }

    [Test]
    public void BadArgumentsAreArgumentExceptions()
    {
        using var scope = NewDisposeScope();
        var q = randn([1, 4, 5, 8], device: Dev);
        var k = randn([1, 2, 5, 8], device: Dev);
        Assert.Throws<ArgumentException>(() => GqaAttention.Apply(q, randn([1, 3, 5, 8], device: Dev), randn([1, 3, 5, 8], device: Dev), null, true), "4 heads over 3");
        Assert.Throws<ArgumentException>(() => GqaAttention.Apply(q, k, randn([1, 2, 6, 8], device: Dev), null, true), "v unlike k");
        Assert.Throws<ArgumentException>(() => GqaAttention.Apply(q, randn([1, 2, 5, 4], device: Dev), randn([1, 2, 5, 4], device: Dev), null, true), "head_dim");
        Assert.Throws<ArgumentException>(() => GqaAttention.Apply(q.view(4, 5, 8), k, k, null, true), "3-D q");
        Assert.Throws<ArgumentException>(() => GqaAttention.Apply(q, k, k, ones([1, 1, 5, 5], ScalarType.Bool, Dev), true), "mask and causal");
        Assert.Throws<ArgumentException>(() => GqaAttention.Apply(q, k.to(ScalarType.Float64), k.to(ScalarType.Float64), null, true), "dtypes");
    }
}

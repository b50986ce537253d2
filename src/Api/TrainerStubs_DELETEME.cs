// TEMPORARY compile-only stand-ins for llama's and tok's interfaces (CONTRACTS.md); deleted when their branches merge.
using System.Text.Json.Nodes;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SlothSharp.Models
{
    public sealed record RopeScaling(string Type, double Factor, double LowFreqFactor, double HighFreqFactor, int OriginalMaxPositionEmbeddings);
    public sealed record LlamaConfig(int VocabSize, int HiddenSize, int IntermediateSize, int NumHiddenLayers, int NumAttentionHeads,
        int NumKeyValueHeads, int HeadDim, double RmsNormEps, double RopeTheta, RopeScaling? RopeScaling, bool TieWordEmbeddings,
        bool AttentionBias, bool MlpBias, int MaxPositionEmbeddings, int? BosTokenId, int[] EosTokenIds, int? PadTokenId)
    {
        public static LlamaConfig Load(string configJsonPath) => throw new NotImplementedException();
        public JsonObject Raw { get; init; } = new();
    }
    public sealed record LoraConfig(int Rank = 16, double Alpha = 32, double Dropout = 0, IReadOnlyList<string>? TargetModules = null, bool UseRslora = false)
    {
        public double Scale => UseRslora ? Alpha / Math.Sqrt(Rank) : Alpha / Rank;
        public IReadOnlyList<string> ResolvedTargets => TargetModules is null || TargetModules is ["all-linear"]
            ? ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] : TargetModules;
    }
    public sealed class LoadOptions { public Device? Device; public ScalarType? ComputeDtype; public bool Quantize = true; public IProgress<string>? Progress; }
    public sealed class KvCache : IDisposable { public int Length { get; } public void Dispose() { } }
    public sealed class LlamaForCausalLM : nn.Module
    {
        private readonly Embedding embed;
        private Parameter? a, b;
        public LlamaForCausalLM(LlamaConfig c) : base("stub")
        {
            Config = c;
            embed = nn.Embedding(c.VocabSize, c.HiddenSize);
            embed.weight!.requires_grad_(false);
            RegisterComponents();
        }
        public static LlamaForCausalLM FromPretrained(string dir, LoadOptions? options = null) => throw new NotImplementedException();
        public LlamaConfig Config { get; }
        public string SourceDirectory { get; } = "";
        public Device Device => CPU;
        public ScalarType ComputeDtype => ScalarType.Float32;
        public bool IsQuantized => false;
        public Tensor Forward(Tensor inputIds, Tensor? attentionMask = null, KvCache? cache = null)
        {
            var h = embed.forward(inputIds);
            if (a is null) return h;
            var x = training && Lora!.Dropout > 0 ? nn.functional.dropout(h, Lora.Dropout, true) : h;
            return h + x.matmul(a.t()).matmul(b!.t()) * Lora!.Scale;
        }
        public KvCache NewKvCache(int batch, int maxLength) => new();
        public Tensor LmHeadWeight => embed.weight!;
        public Tensor Logits(Tensor hidden) => hidden.matmul(LmHeadWeight.t()).to(ScalarType.Float32);
        public bool GradientCheckpointing { get; set; }
        public void AddLora(LoraConfig config, long seed)
        {
            if (Lora is not null) throw new InvalidOperationException("twice");
            Lora = config;
            var g = new Generator((ulong)seed);
            a = new Parameter(rand([config.Rank, Config.HiddenSize], generator: g) * 0.1);
            b = new Parameter(zeros(Config.HiddenSize, config.Rank));
            register_parameter("a", a); register_parameter("b", b);
        }
        public LoraConfig? Lora { get; private set; }
        public IReadOnlyList<KeyValuePair<string, Parameter>> LoraParameters() => a is null ? [] :
            [new("model.layers.0.self_attn.q_proj.lora_A.weight", a), new("model.layers.0.self_attn.q_proj.lora_B.weight", b!)];
        public IEnumerable<KeyValuePair<string, Tensor>> MergedDenseWeights(ScalarType dtype) => throw new NotImplementedException();
    }
    public static class LlamaCheckpointWriter
    {
        public static void WriteRandom(string dir, LlamaConfig config, long seed, bool bnb4bit, string? tokenizerJsonSource = null) => throw new NotImplementedException();
    }
}
namespace SlothSharp.Tokenization
{
    public sealed class HfTokenizer
    {
        public static HfTokenizer FromDirectory(string modelDir) => throw new NotImplementedException();
        public static HfTokenizer FromFile(string tokenizerJson) => throw new NotImplementedException();
        public int[] Encode(string text, bool addBos = false) => throw new NotImplementedException();
        public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = true) => throw new NotImplementedException();
        public int? BosTokenId => 0; public int? EosTokenId => 1; public int? PadTokenId => 2; public int VocabSize => 420;
    }
}
namespace SlothSharp.Data
{
    public static class TextDocuments { public static IReadOnlyList<string> Read(string path) => throw new NotImplementedException(); }
}
namespace SlothSharp.Evaluation
{
    public sealed record EvalResult(double Loss, long Tokens);
    public static class Evaluator
    {
        public static EvalResult Evaluate(SlothSharp.Models.LlamaForCausalLM model, SlothSharp.Tokenization.HfTokenizer tok, IReadOnlyList<string> docs,
            int batchSize = 8, int? maxLength = null, IProgress<(int done, int total)>? progress = null) => throw new NotImplementedException();
    }
}
namespace SlothSharp.Generation
{
    public sealed record GenerationOptions(int MaxNewTokens = 64, double Temperature = 0, double TopP = 1, int TopK = 0, long Seed = 0, IReadOnlyList<int>? StopTokenIds = null);
    public static class TextGenerator
    {
        public static IEnumerable<int> Generate(SlothSharp.Models.LlamaForCausalLM model, IReadOnlyList<int> promptIds, GenerationOptions options) => throw new NotImplementedException();
    }
}

// TEMPORARY compile-only stand-ins for llama's and tok's interfaces (CONTRACTS.md); deleted when their branches merge.
using System.Text.Json.Nodes;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

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

using SlothSharp.Models;
using SlothSharp.Tokenization;
using static TorchSharp.torch;

namespace SlothSharp.Cli;

/// <summary>
/// `sloth eval --save-logits FILE`: the full logits of one sequence, for a cross-check against another implementation
/// (tools/hf/parity.py compares them with transformers + PEFT on the same ids). The sequence is BOS + the tokens of
/// the corpus's longest document, cut to <see cref="MaxTokens"/> (and to --max-length): long enough to cover many
/// positions, small enough to keep the file at T·V·4 bytes (128 MB for 256 tokens of a 128K vocabulary).
/// File: safetensors with <c>input_ids</c> int64 [1, T] and <c>logits</c> float32 [1, T, V].
/// </summary>
internal static class LogitsDump
{
    public const int MaxTokens = 256;

    /// <summary>Checked before the model loads: the folder must exist and the name must be a .safetensors file.</summary>
    public static void CheckTarget(string path)
    {
        if (!path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase))
            throw new CliException("--save-logits", $"{path}: the file name must end in .safetensors");
        var dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        if (!Directory.Exists(dir)) throw new CliException("--save-logits", $"{dir}: directory not found");
    }

    /// <summary>Writes the file (atomically, through SafetensorsWriter) and returns T.</summary>
    public static int Save(CausalLM model, HfTokenizer tok, IReadOnlyList<string> docs, int? maxLength, string path)
    {
        var limit = Math.Min(MaxTokens, maxLength ?? MaxTokens);
        var ids = docs.Select(d => SlothSharp.Evaluation.Evaluator.EncodeDocument(tok, d)).MaxBy(x => x.Length)!;
        ids = ids[..Math.Min(ids.Length, limit)];
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var input = tensor(ids.Select(i => (long)i).ToArray(), ScalarType.Int64).reshape(1, ids.Length).to(model.Device);
        var logits = model.Logits(model.Forward(input));
        SafetensorsWriter.Save(path, [new("input_ids", input.cpu()), new("logits", logits.cpu())],
            new Dictionary<string, string> { ["dtype"] = model.ComputeDtype.ToString(), ["source"] = model.SourceDirectory });
        return ids.Length;
    }
}

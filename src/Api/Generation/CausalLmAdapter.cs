using System.Text.Json.Nodes;
using SlothSharp.Models;
using static TorchSharp.torch;

namespace SlothSharp.Generation;

/// <summary><see cref="CausalLM"/> as an <see cref="ICausalLm"/>. Forward runs in eval mode (no LoRA
/// dropout) and restores the model's mode afterwards.</summary>
internal sealed class CausalLmAdapter : ICausalLm
{
    private readonly CausalLM _model;

    public CausalLmAdapter(CausalLM model)
    {
        ArgumentNullException.ThrowIfNull(model);
        _model = model;
        EosTokenIds = StopIds(model);
        DynamicRopeLength = Enumerable.Range(0, model.Config.NumHiddenLayers).Select(model.Config.RopeOf)
            .FirstOrDefault(r => r.IsDynamic)?.OriginalMaxPositionEmbeddings;
    }

    public Device Device => _model.Device;
    public int VocabSize => _model.Config.VocabSize;
    public int MaxPositionEmbeddings => _model.Config.MaxPositionEmbeddings;
    public IReadOnlyList<int> EosTokenIds { get; }
    public Tensor LmHeadWeight => _model.LmHeadWeight;
    public double? FinalLogitSoftcap => _model.Config.FinalLogitSoftcap;

    public Tensor Forward(Tensor inputIds, Tensor? attentionMask, IDisposable? cache, Tensor? positionIds = null)
    {
        var wasTraining = _model.training;
        if (wasTraining) _model.eval();
        try { return _model.Forward(inputIds, attentionMask, (KvCache?)cache, positionIds); }
        finally { if (wasTraining) _model.train(); }
    }

    public IDisposable NewKvCache(int batch, int maxLength) => _model.NewBatchKvCache(batch, maxLength);

    public void ResetCache(IDisposable cache) => ((KvCache)cache).Reset();

    public int? DynamicRopeLength { get; }

    public Tensor Logits(Tensor hidden) => _model.Logits(hidden);

    /// <summary>config.json's EOS ids plus generation_config.json's eos_token_id (an int or a list; Llama 3 Instruct
    /// lists &lt;|eot_id|&gt; there), when that file exists.</summary>
    internal static IReadOnlyList<int> StopIds(CausalLM model)
    {
        var ids = new List<int>(model.Config.EosTokenIds);
        var path = Path.Combine(model.SourceDirectory, "generation_config.json");
        if (!File.Exists(path)) return ids;
        JsonNode? root;
        try { root = JsonNode.Parse(File.ReadAllText(path)); }
        catch (System.Text.Json.JsonException e) { throw new InvalidDataException($"{path}: not valid JSON: {e.Message}", e); }
        var eos = root is JsonObject o ? o["eos_token_id"] : null;
        var values = eos switch
        {
            null => Array.Empty<JsonNode?>(),
            JsonArray a => a.ToArray(),
            _ => new[] { eos },
        };
        foreach (var v in values)
        {
            if (v is not JsonValue jv || !jv.TryGetValue<int>(out var id))
                throw new InvalidDataException($"{path}: eos_token_id: expected an integer or a list of integers");
            if (!ids.Contains(id)) ids.Add(id);
        }
        return ids;
    }
}

using SlothSharp.Models.Families;

namespace SlothSharp.Models;

/// <summary>The registry of supported families: config.json's model_type → <see cref="ModelFamily"/> (first match
/// wins). A new family is one class and one line here (docs/adding-a-model.md).</summary>
public static class ModelFamilies
{
    public static ModelFamily Llama { get; } = new LlamaFamily();
    public static ModelFamily Mistral { get; } = new MistralFamily();
    public static ModelFamily Qwen2 { get; } = new Qwen2Family();
    public static ModelFamily Qwen3 { get; } = new Qwen3Family();
    public static ModelFamily Gemma2 { get; } = new Gemma2Family();
    public static ModelFamily Gemma3 { get; } = new Gemma3Family();
    public static ModelFamily Phi3 { get; } = new Phi3Family();

    public static IReadOnlyList<ModelFamily> All { get; } = [Llama, Mistral, Qwen2, Qwen3, Gemma2, Gemma3, Phi3];

    /// <summary>The family that reads <paramref name="modelType"/>, or null.</summary>
    public static ModelFamily? ForModelType(string modelType) => All.FirstOrDefault(f => f.ModelTypes.Contains(modelType));
}

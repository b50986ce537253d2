using System.Reflection;

namespace SlothSharp.Templates;

/// <summary>The chat templates shipped with SlothSharp for base models that have none (BuiltIn/*.jinja, embedded).
/// They follow the model families' formats and wrap assistant turns in <c>{% generation %}</c>.</summary>
internal static class BuiltInChatTemplates
{
    public static readonly IReadOnlyList<string> Names = ["chatml", "llama-3", "gemma", "mistral", "phi-3", "qwen-2.5", "alpaca"];

    public static bool IsBuiltIn(string name) => Names.Contains(name, StringComparer.OrdinalIgnoreCase);

    public static string Source(string name)
    {
        var canonical = Names.FirstOrDefault(n => string.Equals(n, name, StringComparison.OrdinalIgnoreCase))
            ?? throw new ArgumentException($"unknown built-in chat template '{name}'; built-ins: {string.Join(", ", Names)}", nameof(name));
        var resource = $"SlothSharp.Templates.BuiltIn.{canonical}.jinja";
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream(resource)
            ?? throw new InvalidOperationException($"embedded resource {resource} is missing from the SlothSharp assembly");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}

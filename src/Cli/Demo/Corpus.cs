using System.Text;

namespace SlothSharp.Cli.Demo;

/// <summary>A deterministic English-like training text (nothing is downloaded): sentences assembled from fixed word
/// lists by a seeded generator, so every run and every machine trains on the same tokens.</summary>
internal static class Corpus
{
    private static readonly string[] Subjects =
    [
        "The engineer", "A small sloth", "The compiler", "Our model", "The tokenizer", "A careful reviewer", "The GPU",
        "The scheduler", "A curious student", "The benchmark", "The old library", "Every kernel", "The optimizer",
        "A tired researcher", "The memory allocator", "The training loop", "A quantized weight", "The dataset",
    ];
    private static readonly string[] Verbs =
    [
        "reads", "writes", "measures", "compresses", "rewrites", "explains", "tests", "streams", "quantizes", "checks",
        "schedules", "predicts", "copies", "ignores", "improves", "documents", "profiles", "caches",
    ];
    private static readonly string[] Objects =
    [
        "the logits", "a long sentence", "every gradient", "the hidden states", "four bits per weight", "the loss curve",
        "a memory budget", "the attention scores", "a tiny matrix", "the vocabulary", "one chunk at a time",
        "the rotary angles", "a faithful reference", "the absmax codes", "the learning rate", "the bandwidth limit",
    ];
    private static readonly string[] Endings =
    [
        "before lunch", "without a crash", "in one pass", "with great care", "on the CPU", "on the GPU", "every morning",
        "twice as fast", "as the tests demand", "and nobody complains", "while the fans spin", "in bfloat16",
    ];

    public static string Generate(int sentences, int seed = 20261123)
    {
        var rng = new Random(seed);
        var sb = new StringBuilder();
        for (var i = 0; i < sentences; i++)
        {
            sb.Append(Subjects[rng.Next(Subjects.Length)]).Append(' ').Append(Verbs[rng.Next(Verbs.Length)]).Append(' ')
              .Append(Objects[rng.Next(Objects.Length)]).Append(' ').Append(Endings[rng.Next(Endings.Length)]);
            sb.Append(rng.Next(5) == 0 ? "!" : ".");
            sb.Append(i % 7 == 6 ? "\n\n" : " ");
        }
        return sb.ToString();
    }
}

namespace SlothSharp.Tests;

/// <summary>The small corpus the trainer tests share: documents of uneven length (one shorter than most rows, some
/// longer than a short --seq), tokenized by the golden tiny tokenizer into many pieces.</summary>
internal static class TrainingCorpus
{
    public static readonly string[] Documents =
    [
        "Return a new dictionary initialized from an optional positional argument and a possibly empty set of keyword arguments.",
        "Make an iterator that aggregates elements from each of the iterables.",
        "The sloth hangs from the branch and reads the weights four bits at a time.",
        "A short one.",
        "Every gradient that reaches the adapters is float32, whatever the compute dtype of the base model is.",
        "Tokens are bytes merged by a small vocabulary, so this sentence becomes many pieces.",
    ];
}

using Parquet.Schema;
using Parquet.Serialization;

namespace SlothSharp.Tests.Data;

/// <summary>The generator of tests/data/datasets/*.parquet (Parquet.Net 6.1.0) and the rows they hold. The messages
/// column is nested as in Hub chat datasets: list&lt;struct&lt;role: string, content: string&gt;&gt;.</summary>
internal static class ParquetDatasets
{
    public static readonly (string Id, (string Role, string Content)[] Messages)[] MessageRows =
    [
        ("a", [("user", "Say hi."), ("assistant", "Hi!")]),
        ("b", [("system", "Be brief."), ("user", "2+2?"), ("assistant", "4"), ("user", "Thanks. 3+3?"), ("assistant", "6")]),
    ];

    public static readonly string[] TextRows = ["First Parquet document.", "Second one, é."];

    public static ParquetSchema MessagesSchema => new(
        new DataField<string>("id"),
        new ListField("messages", new StructField("element", new DataField<string>("role"), new DataField<string>("content"))));

    public static void WriteMessages(string path, IEnumerable<(string Id, (string Role, string Content)[] Messages)> rows)
    {
        var data = rows.Select(r => (IDictionary<string, object?>)new Dictionary<string, object?>
        {
            ["id"] = r.Id,
            ["messages"] = r.Messages.Select(m => new Dictionary<string, object?> { ["role"] = m.Role, ["content"] = m.Content }).ToList(),
        }).ToList();
        Write(path, data, MessagesSchema);
    }

    public static void WriteText(string path, IEnumerable<string> texts) =>
        Write(path, texts.Select(t => (IDictionary<string, object?>)new Dictionary<string, object?> { ["text"] = t }).ToList(),
              new ParquetSchema(new DataField<string>("text")));

    private static void Write(string path, IReadOnlyCollection<IDictionary<string, object?>> rows, ParquetSchema schema)
    {
        var tmp = path + ".tmp";
        using (var fs = File.Create(tmp)) ParquetSerializer.SerializeUntypedAsync(rows, schema, fs).GetAwaiter().GetResult();
        File.Move(tmp, path, overwrite: true);
    }
}

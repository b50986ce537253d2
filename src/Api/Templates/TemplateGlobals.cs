using System.Globalization;
using System.Text;

namespace SlothSharp.Templates;

/// <summary>The global functions templates can call: <c>range</c>, <c>namespace</c>, <c>dict</c>,
/// <c>raise_exception</c> (throws <see cref="ChatTemplateException"/>) and <c>strftime_now</c> (the render's
/// clock, local time, C strftime codes).</summary>
internal static class TemplateGlobals
{
    public static void AddTo(Scope scope)
    {
        scope.Set("range", new NativeCallable("range", (_, a, _) => Range(a)));
        scope.Set("namespace", new NativeCallable("namespace", (_, a, k) =>
        {
            var ns = new JinjaNamespace();
            foreach (var arg in a)
            {
                if (arg is not JinjaDict d) throw new JinjaError("namespace() takes a mapping or keyword arguments");
                foreach (var (key, v) in d.Entries) ns.Attributes[PyOps.Str(key)] = v;
            }
            foreach (var (key, v) in k) ns.Attributes[key] = v;
            return ns;
        }));
        scope.Set("dict", new NativeCallable("dict", (_, a, k) =>
        {
            var d = new JinjaDict();
            if (a.Count > 0)
            {
                if (a[0] is JinjaDict src) foreach (var (key, v) in src.Entries) d.Set(key, v);
                else
                    foreach (var pair in PyOps.Iterate(a[0]))
                    {
                        var kv = PyOps.Iterate(pair).ToList();
                        if (kv.Count != 2) throw new JinjaError("dictionary update sequence element has wrong length; 2 is required");
                        d.Set(kv[0], kv[1]);
                    }
            }
            foreach (var (key, v) in k) d.Set(key, v);
            return d;
        }));
        scope.Set("raise_exception", new NativeCallable("raise_exception", (r, a, _) =>
            throw new ChatTemplateException(a.Count > 0 ? PyOps.Str(a[0]) : "", r.TemplateName, r.CurrentLine)));
        scope.Set("strftime_now", new NativeCallable("strftime_now", (r, a, _) =>
            Strftime(r.Clock.GetLocalNow(), a.Count > 0 ? PyOps.Str(a[0]) : throw new JinjaError("strftime_now() needs a format"))));
    }

    private static JinjaList Range(IReadOnlyList<object?> a)
    {
        long N(object? v) => v is long l ? l : v is bool b ? (b ? 1 : 0) : throw new JinjaError($"'{PyOps.TypeName(v)}' object cannot be interpreted as an integer");
        long start = 0, stop, step = 1;
        switch (a.Count)
        {
            case 1: stop = N(a[0]); break;
            case 2: start = N(a[0]); stop = N(a[1]); break;
            case 3: start = N(a[0]); stop = N(a[1]); step = N(a[2]); break;
            default: throw new JinjaError($"range expected 1 to 3 arguments, got {a.Count}");
        }
        if (step == 0) throw new JinjaError("range() arg 3 must not be zero");
        var list = new JinjaList();
        for (var i = start; step > 0 ? i < stop : i > stop; i += step)
        {
            list.Add(i);
            if (list.Count > 100_000) throw new JinjaError("Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
        }
        return list;
    }

    private static readonly string[] Months = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
    private static readonly string[] Days = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

    /// <summary>C/Python strftime for the codes templates use (%Y %m %d %B %b %A %a %H %I %M %S %p %y %j %f %e %%
    /// and glibc's unpadded %-d, %-m, %-H ...).</summary>
    public static string Strftime(DateTimeOffset t, string format)
    {
        var sb = new StringBuilder();
        for (var i = 0; i < format.Length; i++)
        {
            if (format[i] != '%' || i + 1 >= format.Length) { sb.Append(format[i]); continue; }
            var c = format[++i];
            var unpadded = false;
            if (c == '-' && i + 1 < format.Length) { unpadded = true; c = format[++i]; }
            string Pad(int v, int width) => unpadded ? v.ToString(CultureInfo.InvariantCulture) : v.ToString(new string('0', width), CultureInfo.InvariantCulture);
            sb.Append(c switch
            {
                'Y' => t.Year.ToString(CultureInfo.InvariantCulture),
                'y' => Pad(t.Year % 100, 2),
                'm' => Pad(t.Month, 2),
                'd' => Pad(t.Day, 2),
                'e' => t.Day.ToString(CultureInfo.InvariantCulture).PadLeft(2),
                'B' => Months[t.Month - 1],
                'b' or 'h' => Months[t.Month - 1][..3],
                'A' => Days[(int)t.DayOfWeek],
                'a' => Days[(int)t.DayOfWeek][..3],
                'H' => Pad(t.Hour, 2),
                'I' => Pad(t.Hour % 12 == 0 ? 12 : t.Hour % 12, 2),
                'M' => Pad(t.Minute, 2),
                'S' => Pad(t.Second, 2),
                'p' => t.Hour < 12 ? "AM" : "PM",
                'j' => Pad(t.DayOfYear, 3),
                'f' => (t.Ticks % TimeSpan.TicksPerSecond / 10).ToString("000000", CultureInfo.InvariantCulture),
                'w' => ((int)t.DayOfWeek).ToString(CultureInfo.InvariantCulture),
                '%' => "%",
                _ => "%" + (unpadded ? "-" : "") + c,
            });
        }
        return sb.ToString();
    }
}

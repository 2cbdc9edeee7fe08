/// A Markdown table with every column padded to its widest cell (header included), as the reports print it:
/// `| a   | b |`, then `|-----|---|`, then one line per row. Every row has the header's column count.
enum MarkdownTable {
    static func render(header: [String], rows: [[String]]) -> String {
        let all = [header] + rows
        let widths = header.indices.map { j in all.map { $0[j].count }.max() ?? 0 }
        func line(_ cells: [String]) -> String {
            "| " + cells.enumerated().map { j, s in s + String(repeating: " ", count: widths[j] - s.count) }
                .joined(separator: " | ") + " |"
        }
        var out = line(header) + "\n"
        out += "|" + widths.map { String(repeating: "-", count: $0 + 2) }.joined(separator: "|") + "|\n"
        for r in rows { out += line(r) + "\n" }
        return out
    }
}

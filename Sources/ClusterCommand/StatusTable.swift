/// `cluster status` as a table, and `cluster logs` colours.
enum StatusTable {
    static func render(_ status: ClusterStatus) -> String {
        let header = ["ID", "PID", "SLOT", "GEN", "STATE", "UPTIME", "RESTARTS", "CPU", "RSS", "REQ/S", "CONNS"]
        let rows = status.workers.map { row in
            [String(row.id), String(row.programPID ?? row.pid), String(row.slot), String(row.generation), row.state,
             duration(row.uptimeSeconds), String(row.restarts), String(format: "%.1fs", row.cpuSeconds),
             megabytes(row.rssBytes),
             // A program that is not a swift-cluster worker counts neither.
             row.requestsPerSecond > 0 ? String(format: "%.0f", row.requestsPerSecond) : "-",
             row.connections > 0 ? String(row.connections) : "-"]
        }
        let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
        let lines = ([header] + rows).map { cells in
            cells.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  ")
        }
        let summary = "primary \(status.primaryPID): \(status.workers.count) workers (\(status.desiredWorkers) desired), generation \(status.generation)"
        return ([summary] + lines).joined(separator: "\n")
    }

    static func duration(_ seconds: Double) -> String {
        let whole = Int(seconds)
        if whole < 60 { return "\(whole)s" }
        if whole < 3600 { return "\(whole / 60)m\(whole % 60)s" }
        return "\(whole / 3600)h\(whole % 3600 / 60)m"
    }

    static func megabytes(_ bytes: Int) -> String {
        String(format: "%.1fM", Double(bytes) / 1_048_576)
    }

    /// "[worker N] text" with the prefix in one of six colours, by N.
    static func colourPrefix(_ line: String) -> String {
        guard line.hasPrefix("[worker "), let close = line.firstIndex(of: "]"),
              let id = Int(line[line.index(line.startIndex, offsetBy: 8)..<close]) else { return line }
        let colour = 31 + id % 6
        return "\u{1B}[\(colour)m\(line[...close])\u{1B}[0m\(line[line.index(after: close)...])"
    }
}

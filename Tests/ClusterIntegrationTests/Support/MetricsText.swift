/// The sum of every sample of `name` in Prometheus text, whatever its labels (a counter
/// per slot, say), or nil when there is none.
func metricSum(_ name: String, in text: String) -> Double? {
    let samples = text.split(separator: "\n").filter { $0.hasPrefix(name + " ") || $0.hasPrefix(name + "{") }
    guard !samples.isEmpty else { return nil }
    return samples.compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }.reduce(0, +)
}

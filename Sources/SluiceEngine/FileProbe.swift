import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Answers `when.files` conditions: does a glob (relative to the pipeline root) match at least one file?
public enum FileProbe {
    /// The files (not folders) matching a glob relative to `root`, sorted.
    public static func paths(_ pattern: String, root: String) -> [String] {
        let full = pattern.hasPrefix("/") ? pattern : (root as NSString).appendingPathComponent(pattern)
        var result = glob_t()
        defer { globfree(&result) }
        guard glob(full, 0, nil, &result) == 0 else { return [] }
        var paths: [String] = []
        for i in 0..<Int(result.gl_pathc) {
            guard let p = result.gl_pathv[i] else { continue }
            let path = String(cString: p)
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue { paths.append(path) }
        }
        return paths.sorted()
    }

    public static func matches(_ pattern: String, root: String) -> Bool {
        let full = pattern.hasPrefix("/") ? pattern : (root as NSString).appendingPathComponent(pattern)
        var result = glob_t()
        defer { globfree(&result) }
        guard glob(full, 0, nil, &result) == 0 else { return false }
        return result.gl_pathc > 0
    }
}

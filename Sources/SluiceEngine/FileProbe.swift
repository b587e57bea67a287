import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Answers `when.files` conditions: does a glob (relative to the pipeline root) match at least one file?
enum FileProbe {
    static func matches(_ pattern: String, root: String) -> Bool {
        let full = pattern.hasPrefix("/") ? pattern : (root as NSString).appendingPathComponent(pattern)
        var result = glob_t()
        defer { globfree(&result) }
        guard glob(full, 0, nil, &result) == 0 else { return false }
        return result.gl_pathc > 0
    }
}

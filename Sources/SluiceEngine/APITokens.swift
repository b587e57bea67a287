import Crypto
import Foundation

/// Secrets for the HTTP API: random, shown once, stored only as their SHA-256.
public enum APITokens {
    /// A new secret (`slc_` and 43 URL-safe characters: 256 random bits) and its hash.
    public static func generate() -> (secret: String, hash: String) {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        let secret = "slc_" + Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        return (secret, hash(secret))
    }

    public static func hash(_ secret: String) -> String {
        SHA256.hash(data: Data(secret.utf8)).map { String(format: "%02x", $0) }.joined()
    }
}

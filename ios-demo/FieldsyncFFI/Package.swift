// swift-tools-version:5.9
// The fieldsync library for iOS: the Rust static libraries as an XCFramework (device +
// simulator, built by scripts/build-ios.sh) and the uniffi-generated Swift bindings.
import PackageDescription

let package = Package(
    name: "FieldsyncFFI",
    platforms: [.iOS(.v16), .macOS(.v13)],
    products: [
        .library(name: "FieldsyncFFI", targets: ["FieldsyncFFI"]),
    ],
    targets: [
        // Module `fieldsync_ffiFFI`: libfieldsync_ffi.a + fieldsync_ffiFFI.h + module.modulemap.
        .binaryTarget(name: "fieldsync_ffiFFI", path: "fieldsync_ffiFFI.xcframework"),
        // ffi/bindings/swift/fieldsync_ffi.swift, copied here by scripts/build-ios.sh.
        .target(
            name: "FieldsyncFFI",
            dependencies: ["fieldsync_ffiFFI"],
            path: "Sources/FieldsyncFFI",
            linkerSettings: [
                // rustls-platform-verifier checks certificates with the Security framework.
                .linkedFramework("Security"),
                .linkedFramework("SystemConfiguration"),
            ]
        ),
    ]
)

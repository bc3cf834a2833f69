// Pure Kotlin/JVM: the generated bindings (ffi/bindings/kotlin, from scripts/bindings.sh),
// the repository and the view models. No Android dependency may enter this module.
plugins {
    id("org.jetbrains.kotlin.jvm")
}

kotlin {
    jvmToolchain(17)
    sourceSets {
        main {
            // Generated, not committed: run scripts/bindings.sh (scripts/build-android.sh does).
            kotlin.srcDir("../../ffi/bindings/kotlin")
        }
    }
}

dependencies {
    // The app supplies JNA as an Android archive (net.java.dev.jna:jna@aar, with
    // libjnidispatch.so per ABI); the JVM tests use the plain jar.
    compileOnly("net.java.dev.jna:jna:5.14.0")
    api("org.jetbrains.kotlinx:kotlinx-coroutines-core:1.9.0")

    testImplementation("net.java.dev.jna:jna:5.14.0")
    testImplementation("junit:junit:4.13.2")
}

tasks.test {
    // The same test scripts/test-android-demo.sh runs with kotlinc: real library, real server.
    val targetDir = rootProject.file("../target/debug")
    systemProperty("jna.library.path", targetDir.path)
    environment("FIELDSYNC_SERVER_BIN", System.getenv("FIELDSYNC_SERVER_BIN") ?: File(targetDir, "fieldsync-server").path)
}

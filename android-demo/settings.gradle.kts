// fieldsync Android demo: `:shared` is the pure-Kotlin layer (bindings + repository + view
// models, tested on the JVM by scripts/test-android-demo.sh); `:app` is the Compose UI.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}

dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}

rootProject.name = "fieldsync-android-demo"
include(":shared", ":app")

{
  "targets": [
    {
      "target_name": "tunelab_native",
      "sources": ["src/addon.cc", "src/cpu_backend.cc", "src/cpu_kernel.cc", "src/ane_backend.cc", "src/ane_objc.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-O3", "-fexceptions"],
      "conditions": [
        ["OS=='mac'", {
          "defines": ["ACCELERATE_NEW_LAPACK"],
          "libraries": ["-framework Accelerate", "-framework CoreFoundation", "-framework Foundation", "-framework IOSurface", "-lobjc"],
          "xcode_settings": {
            "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
            "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
            "GCC_OPTIMIZATION_LEVEL": "3",
            "MACOSX_DEPLOYMENT_TARGET": "13.0"
          }
        }],
        ["OS=='linux'", {
          "cflags_cc": ["-fopenmp"],
          "ldflags": ["-fopenmp"],
          "libraries": ["-lopenblas", "-ldl"]
        }]
      ]
    }
  ]
}

{
  "targets": [
    {
      "target_name": "stemedb_wal",
      "sources": [
        "native/wal_addon.cc",
        "native/napi_util.cc",
        "native/wal_io.cc",
        "native/crc32c.cc"
      ],
      "dependencies": [
        "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"
      ],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-O3"],
      "cflags_cc!": ["-O3", "-std=gnu++17"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-fvisibility=hidden"],
      "cflags_cc": ["-O2", "-std=c++17"],
      "configurations": {
        "Release": {
          "cflags!": ["-O3"],
          "cflags_cc!": ["-O3"]
        }
      }
    }
  ]
}

{
  "targets": [
    {
      "target_name": "nodewarden_attrs",
      "sources": [
        "native/attrs.c"
      ],
      "cflags": [
        "-O2",
        "-Wall",
        "-Wextra",
        "-Wno-unused-parameter"
      ],
      "libraries": [
        "-lpthread"
      ]
    }
  ]
}
"""Export: .tvt -> .tflite (int8 builtins, LiteRT), and the flatbuffer writer it uses."""

"""Host side of the board: framing (docs/protocol.md), the serial link, the device driver,
the layer scheduler and the simulated board's launcher.

`sw.runtime.framing` imports only the standard library (the gateware testbenches use it)."""

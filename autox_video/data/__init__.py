"""Data: annotation lists, checked sample lists, video decoding and checks, prepare, the synthetic demo set."""

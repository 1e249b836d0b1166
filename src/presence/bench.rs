//! Benchmark generator (filled in below).

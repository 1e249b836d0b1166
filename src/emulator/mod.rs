//! The built-in fake tenant (see shared/docs/emulator.md).

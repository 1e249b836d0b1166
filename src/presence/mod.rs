//! IP-based office presence (see shared/docs/ip-presence.md).

//! The wire protocol, apart from the engine that drives it: frames (`frame`), the send queue
//! (`outbox`) and permessage-deflate (`deflate`). Private: the engine and the handle use it.

pub(crate) mod deflate;
pub(crate) mod frame;
pub(crate) mod outbox;

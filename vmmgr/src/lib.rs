//! vmmgr

//! TEMPORARY shim until the seccomp module lands (not committed).
use std::path::Path;
#[derive(Debug, Clone, Copy)]
pub enum Nested { Allow, Deny }
#[derive(Debug)]
pub struct Program;
pub fn load(_p: &Path, _n: Nested) -> Result<Program, std::io::Error> { Ok(Program) }
pub fn install(_p: &Program) -> std::io::Result<()> { Ok(()) }

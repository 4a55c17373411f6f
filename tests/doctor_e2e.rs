//! `esp-aws doctor` end to end: the checklist against the virtual module, a healthy chain
//! and each broken link with its sentence.

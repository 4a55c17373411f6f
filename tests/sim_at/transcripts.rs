//! Per-generation transcripts: exact bytes for each command, including error paths.

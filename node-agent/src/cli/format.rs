//! Output formatting shared by the commands.

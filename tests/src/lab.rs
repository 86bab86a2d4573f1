//! lab placeholder

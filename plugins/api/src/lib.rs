//! stable plugin ABI

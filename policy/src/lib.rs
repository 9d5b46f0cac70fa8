//! policy model and parser

//! From a request to a rule: the normalised request target, and the route table (host →
//! vhost → first matching rule) with the cache key or image arguments the rule makes of it.

pub mod table;
pub mod target;

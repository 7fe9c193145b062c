//! The store's integration tests, linked as one binary: real peers on
//! RocksDB on disk (`store`), and several peers over a simulated network
//! that drops, delays and partitions (`store_sim`).

#[path = "../child/mod.rs"]
mod child;
#[path = "../sim/mod.rs"]
mod sim;
mod store;
mod store_sim;

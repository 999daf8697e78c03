//! The replay's unit tests' one method: `shop.Shop/Get`, returning a `Product { int32 price =
//! 1; }`.

use prost_reflect::{DescriptorPool, MethodDescriptor};

/// `shop.Shop/Get`, compiled from source now.
pub(super) fn method() -> MethodDescriptor {
    let dir = tempfile::tempdir().unwrap();
    let text = "syntax = \"proto3\"; package shop;
        service Shop { rpc Get(Product) returns (Product); }
        message Product { int32 price = 1; }";
    std::fs::write(dir.path().join("shop.proto"), text).unwrap();
    let set = protox::compile(["shop.proto"], [dir.path()]).unwrap();
    let pool = DescriptorPool::from_file_descriptor_set(set).unwrap();
    pool.get_service_by_name("shop.Shop")
        .unwrap()
        .methods()
        .next()
        .unwrap()
}

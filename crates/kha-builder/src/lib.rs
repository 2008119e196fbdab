//! kha-builder: the builder daemon. It enrols with a control node, keeps a
//! session open, takes jobs it has slots for, checks their commit out, runs
//! them through an executor (lxc by default) and ships their logs back.

pub mod executor;

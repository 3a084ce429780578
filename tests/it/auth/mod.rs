//! Authentication and authorization: standalone (`htpasswd`, `token`) and against a cluster
//! (`openshift`).

mod htpasswd;
mod openshift;
mod token;

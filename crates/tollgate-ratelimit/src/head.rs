//! [`Head`]: what the layer reads from a request before calling the store —
//! the whole request, or its [`Parts`] when a closure has to read them.
//!
//! The key, plan and cost closures take `&Parts`, which only a split request
//! has; splitting and rebuilding moves the whole head twice, so the layer
//! splits only when such a closure is configured.

use http::request::Parts;
use http::{Extensions, HeaderMap, Method, Request, Uri};

/// What the rules read from a request.
pub(crate) trait Head {
    fn extensions(&self) -> &Extensions;
    fn method(&self) -> &Method;
    fn uri(&self) -> &Uri;
    fn headers(&self) -> &HeaderMap;
    /// The parts, for closures. `None` for a whole request, which the layer
    /// reads only when no closure is configured.
    fn parts(&self) -> Option<&Parts>;
}

impl Head for Parts {
    fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    fn method(&self) -> &Method {
        &self.method
    }

    fn uri(&self) -> &Uri {
        &self.uri
    }

    fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    fn parts(&self) -> Option<&Parts> {
        Some(self)
    }
}

impl<B> Head for Request<B> {
    fn extensions(&self) -> &Extensions {
        Request::extensions(self)
    }

    fn method(&self) -> &Method {
        Request::method(self)
    }

    fn uri(&self) -> &Uri {
        Request::uri(self)
    }

    fn headers(&self) -> &HeaderMap {
        Request::headers(self)
    }

    fn parts(&self) -> Option<&Parts> {
        None
    }
}

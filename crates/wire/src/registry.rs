//! The IANA ICMP and ICMPv6 type/code registries, as data.
//!
//! [`ICMPV4_TYPES`] follows the IANA "ICMP Type Numbers" registry (every
//! registered type, including the deprecated and reserved ones) and
//! [`ICMPV6_TYPES`] the IANA "ICMPv6 Parameters" registry. Both tables are
//! sorted by type value; each type carries the codes registered for it.
//! Values absent from a table are unassigned.
//!
//! Names are the registry's wording. A code listed as `0` without further
//! meaning is named [`NO_CODE`]. References use the registry's citation tags,
//! with RFCs written as `"RFC 792"`; the procedural RFC 2780 citation that
//! IANA attaches to many ICMPv4 code sub-registries is left out.
//!
//! The enums ([`Icmpv4Type`], [`Icmpv6Type`], [`Unreachable4`],
//! [`Unreachable6`]) name the values a prober deals with most and keep every
//! other value in an `Unknown` variant, so any `u8` survives a round trip.
//!
//! Nothing here allocates.

use core::fmt;

use Class::{Error as E, Informational as I};

/// Which ICMP: v4 (IP protocol 1) or v6 (next header 58).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// ICMP for IPv4 (RFC 792), IP protocol 1.
    V4,
    /// ICMPv6 (RFC 4443), next header 58.
    V6,
}

impl Family {
    /// The family of an address.
    pub fn of(addr: core::net::IpAddr) -> Family {
        if addr.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }

    /// The registry table of this family, sorted by type value.
    pub fn types(self) -> &'static [TypeInfo] {
        match self {
            Family::V4 => ICMPV4_TYPES,
            Family::V6 => ICMPV6_TYPES,
        }
    }
}

/// Whether a message type is an error (quotes an offending datagram) or informational.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// An error message: it carries (part of) the datagram that caused it.
    Error,
    /// An informational (query, reply or control) message.
    Informational,
}

/// One registered code of a message type.
#[derive(Debug)]
pub struct CodeInfo {
    /// The code field value.
    pub value: u8,
    /// The registry's name for the code.
    pub name: &'static str,
}

/// One registered message type.
#[derive(Debug)]
pub struct TypeInfo {
    /// The ICMP family this type belongs to.
    pub family: Family,
    /// The type field value.
    pub value: u8,
    /// The registry's name for the type.
    pub name: &'static str,
    /// Error or informational.
    pub class: Class,
    /// Whether the registry marks the type deprecated.
    pub deprecated: bool,
    /// The defining documents, e.g. `"RFC 792"` or `"RFC 792, RFC 6633"`.
    pub reference: &'static str,
    /// The registered codes, sorted by value (empty when none are registered).
    pub codes: &'static [CodeInfo],
}

impl TypeInfo {
    /// The registered code with this value, if any.
    pub fn code(&self, code: u8) -> Option<&'static CodeInfo> {
        self.codes.iter().find(|c| c.value == code)
    }

    /// The registry's name of this code, if registered.
    pub fn code_name(&self, code: u8) -> Option<&'static str> {
        self.code(code).map(|c| c.name)
    }
}

/// The name given to a code `0` that the registry lists without further meaning.
pub const NO_CODE: &str = "No Code";

/// The name [`type_name`] reports for a type absent from the registry.
pub const UNASSIGNED: &str = "Unassigned";

const fn c(value: u8, name: &'static str) -> CodeInfo {
    CodeInfo { value, name }
}

const fn v4(
    value: u8,
    name: &'static str,
    class: Class,
    reference: &'static str,
    codes: &'static [CodeInfo],
) -> TypeInfo {
    TypeInfo {
        family: Family::V4,
        value,
        name,
        class,
        deprecated: false,
        reference,
        codes,
    }
}

const fn v4_deprecated(
    value: u8,
    name: &'static str,
    class: Class,
    reference: &'static str,
    codes: &'static [CodeInfo],
) -> TypeInfo {
    TypeInfo {
        deprecated: true,
        ..v4(value, name, class, reference, codes)
    }
}

/// ICMPv6 types take their class from the high bit (RFC 4443 section 2.1).
const fn v6(
    value: u8,
    name: &'static str,
    reference: &'static str,
    codes: &'static [CodeInfo],
) -> TypeInfo {
    TypeInfo {
        family: Family::V6,
        value,
        name,
        class: if value < 128 {
            Class::Error
        } else {
            Class::Informational
        },
        deprecated: false,
        reference,
        codes,
    }
}

const NONE: &[CodeInfo] = &[];
const ONLY_ZERO: &[CodeInfo] = &[c(0, NO_CODE)];

const V4_UNREACHABLE: &[CodeInfo] = &[
    c(0, "Net Unreachable"),
    c(1, "Host Unreachable"),
    c(2, "Protocol Unreachable"),
    c(3, "Port Unreachable"),
    c(4, "Fragmentation Needed and Don't Fragment was Set"),
    c(5, "Source Route Failed"),
    c(6, "Destination Network Unknown"),
    c(7, "Destination Host Unknown"),
    c(8, "Source Host Isolated"),
    c(
        9,
        "Communication with Destination Network is Administratively Prohibited",
    ),
    c(
        10,
        "Communication with Destination Host is Administratively Prohibited",
    ),
    c(11, "Destination Network Unreachable for Type of Service"),
    c(12, "Destination Host Unreachable for Type of Service"),
    c(13, "Communication Administratively Prohibited"),
    c(14, "Host Precedence Violation"),
    c(15, "Precedence cutoff in effect"),
];

const V4_REDIRECT: &[CodeInfo] = &[
    c(0, "Redirect Datagram for the Network (or subnet)"),
    c(1, "Redirect Datagram for the Host"),
    c(2, "Redirect Datagram for the Type of Service and Network"),
    c(3, "Redirect Datagram for the Type of Service and Host"),
];

const V4_ALTERNATE_HOST: &[CodeInfo] = &[c(0, "Alternate Address for Host")];

const V4_ROUTER_ADVERTISEMENT: &[CodeInfo] = &[
    c(0, "Normal router advertisement"),
    c(16, "Does not route common traffic"),
];

const V4_TIME_EXCEEDED: &[CodeInfo] = &[
    c(0, "Time to Live exceeded in Transit"),
    c(1, "Fragment Reassembly Time Exceeded"),
];

const V4_PARAMETER_PROBLEM: &[CodeInfo] = &[
    c(0, "Pointer indicates the error"),
    c(1, "Missing a Required Option"),
    c(2, "Bad Length"),
];

const V4_PHOTURIS: &[CodeInfo] = &[
    c(0, "Bad SPI"),
    c(1, "Authentication Failed"),
    c(2, "Decompression Failed"),
    c(3, "Decryption Failed"),
    c(4, "Need Authentication"),
    c(5, "Need Authorization"),
];

/// Extended Echo Request codes (RFC 8335), shared by ICMPv4 and ICMPv6.
const EXTENDED_ECHO_REQUEST: &[CodeInfo] = &[c(0, "No Error")];

/// Extended Echo Reply codes (RFC 8335), shared by ICMPv4 and ICMPv6.
const EXTENDED_ECHO_REPLY: &[CodeInfo] = &[
    c(0, "No Error"),
    c(1, "Malformed Query"),
    c(2, "No Such Interface"),
    c(3, "No Such Table Entry"),
    c(4, "Multiple Interfaces Satisfy Query"),
];

const ROBUSTNESS: &str = "Reserved (for Robustness Experiment)";

/// The IANA "ICMP Type Numbers" registry: every registered (including deprecated and
/// reserved) ICMPv4 type, sorted by value.
pub static ICMPV4_TYPES: &[TypeInfo] = &[
    v4(0, "Echo Reply", I, "RFC 792", ONLY_ZERO),
    v4(3, "Destination Unreachable", E, "RFC 792", V4_UNREACHABLE),
    v4_deprecated(4, "Source Quench", E, "RFC 792, RFC 6633", ONLY_ZERO),
    v4(5, "Redirect", E, "RFC 792", V4_REDIRECT),
    v4_deprecated(
        6,
        "Alternate Host Address",
        I,
        "JBP, RFC 6918",
        V4_ALTERNATE_HOST,
    ),
    v4(8, "Echo", I, "RFC 792", ONLY_ZERO),
    v4(
        9,
        "Router Advertisement",
        I,
        "RFC 1256",
        V4_ROUTER_ADVERTISEMENT,
    ),
    v4(10, "Router Solicitation", I, "RFC 1256", ONLY_ZERO),
    v4(11, "Time Exceeded", E, "RFC 792", V4_TIME_EXCEEDED),
    v4(12, "Parameter Problem", E, "RFC 792", V4_PARAMETER_PROBLEM),
    v4(13, "Timestamp", I, "RFC 792", ONLY_ZERO),
    v4(14, "Timestamp Reply", I, "RFC 792", ONLY_ZERO),
    v4_deprecated(15, "Information Request", I, "RFC 792, RFC 6918", ONLY_ZERO),
    v4_deprecated(16, "Information Reply", I, "RFC 792, RFC 6918", ONLY_ZERO),
    v4_deprecated(
        17,
        "Address Mask Request",
        I,
        "RFC 950, RFC 6918",
        ONLY_ZERO,
    ),
    v4_deprecated(18, "Address Mask Reply", I, "RFC 950, RFC 6918", ONLY_ZERO),
    v4(19, "Reserved (for Security)", I, "Solo", NONE),
    v4(20, ROBUSTNESS, I, "ZSu", NONE),
    v4(21, ROBUSTNESS, I, "ZSu", NONE),
    v4(22, ROBUSTNESS, I, "ZSu", NONE),
    v4(23, ROBUSTNESS, I, "ZSu", NONE),
    v4(24, ROBUSTNESS, I, "ZSu", NONE),
    v4(25, ROBUSTNESS, I, "ZSu", NONE),
    v4(26, ROBUSTNESS, I, "ZSu", NONE),
    v4(27, ROBUSTNESS, I, "ZSu", NONE),
    v4(28, ROBUSTNESS, I, "ZSu", NONE),
    v4(29, ROBUSTNESS, I, "ZSu", NONE),
    v4_deprecated(30, "Traceroute", I, "RFC 1393, RFC 6918", NONE),
    v4_deprecated(
        31,
        "Datagram Conversion Error",
        E,
        "RFC 1475, RFC 6918",
        NONE,
    ),
    v4_deprecated(
        32,
        "Mobile Host Redirect",
        I,
        "David_Johnson, RFC 6918",
        NONE,
    ),
    v4_deprecated(33, "IPv6 Where-Are-You", I, "Simpson, RFC 6918", NONE),
    v4_deprecated(34, "IPv6 I-Am-Here", I, "Simpson, RFC 6918", NONE),
    v4_deprecated(
        35,
        "Mobile Registration Request",
        I,
        "Simpson, RFC 6918",
        NONE,
    ),
    v4_deprecated(
        36,
        "Mobile Registration Reply",
        I,
        "Simpson, RFC 6918",
        NONE,
    ),
    v4_deprecated(37, "Domain Name Request", I, "RFC 1788, RFC 6918", NONE),
    v4_deprecated(38, "Domain Name Reply", I, "RFC 1788, RFC 6918", NONE),
    v4_deprecated(39, "SKIP", I, "Markson, RFC 6918", NONE),
    v4(40, "Photuris", E, "RFC 2521", V4_PHOTURIS),
    v4(
        41,
        "ICMP messages utilized by experimental mobility protocols such as Seamoby",
        I,
        "RFC 4065",
        NONE,
    ),
    v4(
        42,
        "Extended Echo Request",
        I,
        "RFC 8335",
        EXTENDED_ECHO_REQUEST,
    ),
    v4(
        43,
        "Extended Echo Reply",
        I,
        "RFC 8335",
        EXTENDED_ECHO_REPLY,
    ),
    v4(253, "RFC3692-style Experiment 1", I, "RFC 4727", NONE),
    v4(254, "RFC3692-style Experiment 2", I, "RFC 4727", NONE),
];

const V6_UNREACHABLE: &[CodeInfo] = &[
    c(0, "No route to destination"),
    c(
        1,
        "Communication with destination administratively prohibited",
    ),
    c(2, "Beyond scope of source address"),
    c(3, "Address unreachable"),
    c(4, "Port unreachable"),
    c(5, "Source address failed ingress/egress policy"),
    c(6, "Reject route to destination"),
    c(7, "Error in Source Routing Header"),
    c(8, "Headers too long"),
];

const V6_TIME_EXCEEDED: &[CodeInfo] = &[
    c(0, "Hop limit exceeded in transit"),
    c(1, "Fragment reassembly time exceeded"),
];

const V6_PARAMETER_PROBLEM: &[CodeInfo] = &[
    c(0, "Erroneous header field encountered"),
    c(1, "Unrecognized Next Header type encountered"),
    c(2, "Unrecognized IPv6 option encountered"),
    c(3, "IPv6 First Fragment has incomplete IPv6 Header Chain"),
    c(4, "SR Upper-layer Header Error"),
    c(
        5,
        "Unrecognized Next Header type encountered by intermediate node",
    ),
    c(6, "Extension header too big"),
    c(7, "Extension header chain too long"),
    c(8, "Too many extension headers"),
    c(9, "Too many options in extension header"),
    c(10, "Option too big"),
];

const V6_ROUTER_RENUMBERING: &[CodeInfo] = &[
    c(0, "Router Renumbering Command"),
    c(1, "Router Renumbering Result"),
    c(255, "Sequence Number Reset"),
];

const V6_NODE_INFO_QUERY: &[CodeInfo] = &[
    c(
        0,
        "The Data field contains an IPv6 address which is the Subject of this Query.",
    ),
    c(
        1,
        "The Data field contains a name which is the Subject of this Query, \
         or is empty, as in the case of a NOOP.",
    ),
    c(
        2,
        "The Data field contains an IPv4 address which is the Subject of this Query.",
    ),
];

const V6_NODE_INFO_RESPONSE: &[CodeInfo] = &[
    c(
        0,
        "A successful reply. The Reply Data field may or may not be empty.",
    ),
    c(
        1,
        "The Responder refuses to supply the answer. The Reply Data field will be empty.",
    ),
    c(
        2,
        "The Qtype of the Query is unknown to the Responder. \
         The Reply Data field will be empty.",
    ),
];

/// RPL control message codes from RFC 6550.
const V6_RPL: &[CodeInfo] = &[
    c(0x00, "DODAG Information Solicitation"),
    c(0x01, "DODAG Information Object"),
    c(0x02, "Destination Advertisement Object"),
    c(0x03, "Destination Advertisement Object Acknowledgment"),
    c(0x80, "Secure DODAG Information Solicitation"),
    c(0x81, "Secure DODAG Information Object"),
    c(0x82, "Secure Destination Advertisement Object"),
    c(
        0x83,
        "Secure Destination Advertisement Object Acknowledgment",
    ),
    c(0x8a, "Consistency Check"),
];

const PRIVATE: &str = "Private experimentation";

/// The IANA "ICMPv6 Parameters" type registry: every registered ICMPv6 type, sorted by
/// value. Types 0..=127 are errors, 128..=255 informational.
pub static ICMPV6_TYPES: &[TypeInfo] = &[
    v6(0, "Reserved", "RFC 4443", NONE),
    v6(1, "Destination Unreachable", "RFC 4443", V6_UNREACHABLE),
    v6(2, "Packet Too Big", "RFC 4443", ONLY_ZERO),
    v6(3, "Time Exceeded", "RFC 4443", V6_TIME_EXCEEDED),
    v6(4, "Parameter Problem", "RFC 4443", V6_PARAMETER_PROBLEM),
    v6(100, PRIVATE, "RFC 4443", NONE),
    v6(101, PRIVATE, "RFC 4443", NONE),
    v6(
        127,
        "Reserved for expansion of ICMPv6 error messages",
        "RFC 4443",
        NONE,
    ),
    v6(128, "Echo Request", "RFC 4443", ONLY_ZERO),
    v6(129, "Echo Reply", "RFC 4443", ONLY_ZERO),
    v6(130, "Multicast Listener Query", "RFC 2710", ONLY_ZERO),
    v6(131, "Multicast Listener Report", "RFC 2710", ONLY_ZERO),
    v6(132, "Multicast Listener Done", "RFC 2710", ONLY_ZERO),
    v6(133, "Router Solicitation", "RFC 4861", ONLY_ZERO),
    v6(134, "Router Advertisement", "RFC 4861", ONLY_ZERO),
    v6(135, "Neighbor Solicitation", "RFC 4861", ONLY_ZERO),
    v6(136, "Neighbor Advertisement", "RFC 4861", ONLY_ZERO),
    v6(137, "Redirect Message", "RFC 4861", ONLY_ZERO),
    v6(138, "Router Renumbering", "RFC 2894", V6_ROUTER_RENUMBERING),
    v6(
        139,
        "ICMP Node Information Query",
        "RFC 4620",
        V6_NODE_INFO_QUERY,
    ),
    v6(
        140,
        "ICMP Node Information Response",
        "RFC 4620",
        V6_NODE_INFO_RESPONSE,
    ),
    v6(
        141,
        "Inverse Neighbor Discovery Solicitation Message",
        "RFC 3122",
        ONLY_ZERO,
    ),
    v6(
        142,
        "Inverse Neighbor Discovery Advertisement Message",
        "RFC 3122",
        ONLY_ZERO,
    ),
    v6(143, "Version 2 Multicast Listener Report", "RFC 3810", NONE),
    v6(
        144,
        "Home Agent Address Discovery Request Message",
        "RFC 6275",
        ONLY_ZERO,
    ),
    v6(
        145,
        "Home Agent Address Discovery Reply Message",
        "RFC 6275",
        ONLY_ZERO,
    ),
    v6(146, "Mobile Prefix Solicitation", "RFC 6275", ONLY_ZERO),
    v6(147, "Mobile Prefix Advertisement", "RFC 6275", ONLY_ZERO),
    v6(
        148,
        "Certification Path Solicitation Message",
        "RFC 3971",
        NONE,
    ),
    v6(
        149,
        "Certification Path Advertisement Message",
        "RFC 3971",
        NONE,
    ),
    v6(
        150,
        "ICMP messages utilized by experimental mobility protocols such as Seamoby",
        "RFC 4065",
        NONE,
    ),
    v6(151, "Multicast Router Advertisement", "RFC 4286", NONE),
    v6(152, "Multicast Router Solicitation", "RFC 4286", NONE),
    v6(153, "Multicast Router Termination", "RFC 4286", NONE),
    v6(154, "FMIPv6 Messages", "RFC 5568", NONE),
    v6(155, "RPL Control Message", "RFC 6550", V6_RPL),
    v6(156, "ILNPv6 Locator Update Message", "RFC 6743", NONE),
    v6(157, "Duplicate Address Request", "RFC 6775", NONE),
    v6(158, "Duplicate Address Confirmation", "RFC 6775", NONE),
    v6(159, "MPL Control Message", "RFC 7731", NONE),
    v6(
        160,
        "Extended Echo Request",
        "RFC 8335",
        EXTENDED_ECHO_REQUEST,
    ),
    v6(161, "Extended Echo Reply", "RFC 8335", EXTENDED_ECHO_REPLY),
    v6(200, PRIVATE, "RFC 4443", NONE),
    v6(201, PRIVATE, "RFC 4443", NONE),
    v6(
        255,
        "Reserved for expansion of ICMPv6 informational messages",
        "RFC 4443",
        NONE,
    ),
];

/// The registry entry of a type, or `None` if the type is unassigned.
pub fn lookup(family: Family, ty: u8) -> Option<&'static TypeInfo> {
    let table = family.types();
    table
        .binary_search_by_key(&ty, |t| t.value)
        .ok()
        .map(|i| &table[i])
}

/// The registry's name of a type, or `"Unassigned"` if it has none.
pub fn type_name(family: Family, ty: u8) -> &'static str {
    lookup(family, ty).map_or(UNASSIGNED, |t| t.name)
}

/// The registry's name of a code of a type, or `None` if either is unregistered.
pub fn code_name(family: Family, ty: u8, code: u8) -> Option<&'static str> {
    lookup(family, ty)?.code_name(code)
}

/// Whether a type is an error message, i.e. quotes the datagram that caused it.
///
/// ICMPv4 goes by the registered class (Destination Unreachable, Source Quench,
/// Redirect, Time Exceeded, Parameter Problem, Datagram Conversion Error, Photuris);
/// unassigned types are not errors. ICMPv6 uses the RFC 4443 rule: types 0..=127 are
/// errors, assigned or not.
pub fn is_error(family: Family, ty: u8) -> bool {
    match family {
        Family::V4 => lookup(family, ty).is_some_and(|t| t.class == Class::Error),
        Family::V6 => ty < 128,
    }
}

/// A display helper that never allocates: implements Display as
/// "Destination Unreachable / Port Unreachable" or "Type 77 / code 3" for unknown
/// values.
///
/// A registered type with an unregistered code shows as "Time Exceeded / code 9". A
/// code that carries no meaning (listed as [`NO_CODE`], or `0` for a type without
/// registered codes) is left out: "Echo Reply".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Describe {
    /// The ICMP family.
    pub family: Family,
    /// The type field.
    pub ty: u8,
    /// The code field.
    pub code: u8,
}

impl fmt::Display for Describe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(info) = lookup(self.family, self.ty) else {
            return write!(f, "Type {} / code {}", self.ty, self.code);
        };
        match info.code_name(self.code) {
            Some(NO_CODE) => f.write_str(info.name),
            Some(code) => write!(f, "{} / {}", info.name, code),
            None if info.codes.is_empty() && self.code == 0 => f.write_str(info.name),
            None => write!(f, "{} / code {}", info.name, self.code),
        }
    }
}

/// Defines a `u8`-backed enum whose `Unknown(u8)` variant keeps every unnamed value,
/// with `From<u8>` and `From<Enum> for u8` impls.
macro_rules! enum_with_unknown {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $value:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// Any other value, kept as is. Construct it only with values no named
            /// variant covers, or it will not compare equal to what `From<u8>` gives.
            Unknown(u8),
        }

        impl From<u8> for $name {
            fn from(value: u8) -> Self {
                match value {
                    $( $value => $name::$variant, )+
                    other => $name::Unknown(other),
                }
            }
        }

        impl From<$name> for u8 {
            fn from(value: $name) -> u8 {
                match value {
                    $( $name::$variant => $value, )+
                    $name::Unknown(other) => other,
                }
            }
        }
    };
}

enum_with_unknown! {
    /// The commonly handled ICMPv4 types; everything else is `Unknown`.
    pub enum Icmpv4Type {
        /// Echo Reply (0).
        EchoReply = 0,
        /// Destination Unreachable (3).
        DestinationUnreachable = 3,
        /// Source Quench (4), deprecated by RFC 6633.
        SourceQuench = 4,
        /// Redirect (5).
        Redirect = 5,
        /// Echo, i.e. echo request (8).
        EchoRequest = 8,
        /// Router Advertisement (9).
        RouterAdvertisement = 9,
        /// Router Solicitation (10).
        RouterSolicitation = 10,
        /// Time Exceeded (11).
        TimeExceeded = 11,
        /// Parameter Problem (12).
        ParameterProblem = 12,
        /// Timestamp (13).
        Timestamp = 13,
        /// Timestamp Reply (14).
        TimestampReply = 14,
        /// Extended Echo Request (42, RFC 8335).
        ExtendedEchoRequest = 42,
        /// Extended Echo Reply (43, RFC 8335).
        ExtendedEchoReply = 43,
    }
}

enum_with_unknown! {
    /// The commonly handled ICMPv6 types; everything else is `Unknown`.
    pub enum Icmpv6Type {
        /// Destination Unreachable (1).
        DestinationUnreachable = 1,
        /// Packet Too Big (2).
        PacketTooBig = 2,
        /// Time Exceeded (3).
        TimeExceeded = 3,
        /// Parameter Problem (4).
        ParameterProblem = 4,
        /// Echo Request (128).
        EchoRequest = 128,
        /// Echo Reply (129).
        EchoReply = 129,
        /// Router Solicitation (133).
        RouterSolicitation = 133,
        /// Router Advertisement (134).
        RouterAdvertisement = 134,
        /// Neighbor Solicitation (135).
        NeighborSolicitation = 135,
        /// Neighbor Advertisement (136).
        NeighborAdvertisement = 136,
        /// Redirect Message (137).
        Redirect = 137,
        /// Extended Echo Request (160, RFC 8335).
        ExtendedEchoRequest = 160,
        /// Extended Echo Reply (161, RFC 8335).
        ExtendedEchoReply = 161,
    }
}

enum_with_unknown! {
    /// ICMPv4 Destination Unreachable (type 3) codes.
    pub enum Unreachable4 {
        /// Net Unreachable (0).
        Net = 0,
        /// Host Unreachable (1).
        Host = 1,
        /// Protocol Unreachable (2).
        Protocol = 2,
        /// Port Unreachable (3).
        Port = 3,
        /// Fragmentation Needed and Don't Fragment was Set (4).
        FragmentationNeeded = 4,
        /// Source Route Failed (5).
        SourceRouteFailed = 5,
        /// Destination Network Unknown (6).
        DestNetUnknown = 6,
        /// Destination Host Unknown (7).
        DestHostUnknown = 7,
        /// Source Host Isolated (8).
        SourceHostIsolated = 8,
        /// Communication with Destination Network is Administratively Prohibited (9).
        NetProhibited = 9,
        /// Communication with Destination Host is Administratively Prohibited (10).
        HostProhibited = 10,
        /// Destination Network Unreachable for Type of Service (11).
        NetTos = 11,
        /// Destination Host Unreachable for Type of Service (12).
        HostTos = 12,
        /// Communication Administratively Prohibited (13).
        AdminProhibited = 13,
        /// Host Precedence Violation (14).
        HostPrecedenceViolation = 14,
        /// Precedence cutoff in effect (15).
        PrecedenceCutoff = 15,
    }
}

enum_with_unknown! {
    /// ICMPv6 Destination Unreachable (type 1) codes.
    pub enum Unreachable6 {
        /// No route to destination (0).
        NoRoute = 0,
        /// Communication with destination administratively prohibited (1).
        AdminProhibited = 1,
        /// Beyond scope of source address (2).
        BeyondScope = 2,
        /// Address unreachable (3).
        Address = 3,
        /// Port unreachable (4).
        Port = 4,
        /// Source address failed ingress/egress policy (5).
        SourcePolicy = 5,
        /// Reject route to destination (6).
        RejectRoute = 6,
        /// Error in Source Routing Header (7).
        SourceRouting = 7,
        /// Headers too long (8, RFC 8883).
        HeadersTooLong = 8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    /// A fixed-capacity `fmt::Write` sink, so the tests need no allocation either.
    struct Buf {
        bytes: [u8; 256],
        len: usize,
    }

    impl Buf {
        fn new() -> Self {
            Buf {
                bytes: [0; 256],
                len: 0,
            }
        }

        fn as_str(&self) -> &str {
            core::str::from_utf8(&self.bytes[..self.len]).unwrap()
        }
    }

    impl Write for Buf {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let end = self.len + s.len();
            self.bytes
                .get_mut(self.len..end)
                .ok_or(fmt::Error)?
                .copy_from_slice(s.as_bytes());
            self.len = end;
            Ok(())
        }
    }

    fn describe(family: Family, ty: u8, code: u8) -> Buf {
        let mut buf = Buf::new();
        write!(buf, "{}", Describe { family, ty, code }).unwrap();
        buf
    }

    #[test]
    fn tables_sorted_unique_and_consistent() {
        for (family, table) in [(Family::V4, ICMPV4_TYPES), (Family::V6, ICMPV6_TYPES)] {
            assert!(
                table.windows(2).all(|w| w[0].value < w[1].value),
                "{family:?} types not strictly sorted"
            );
            for t in table {
                assert_eq!(t.family, family, "type {}", t.value);
                assert!(!t.name.is_empty() && !t.reference.is_empty());
                assert!(
                    t.codes.windows(2).all(|w| w[0].value < w[1].value),
                    "{family:?} type {} codes not strictly sorted",
                    t.value
                );
                assert!(t.codes.iter().all(|c| !c.name.is_empty()));
                assert!(core::ptr::eq(lookup(family, t.value).unwrap(), t));
            }
        }
    }

    #[test]
    fn v6_class_follows_high_bit() {
        for t in ICMPV6_TYPES {
            assert_eq!(t.class == Class::Error, t.value < 128, "type {}", t.value);
            assert!(!t.deprecated);
        }
    }

    #[test]
    fn every_assigned_v4_type_is_present() {
        for ty in 0..=u8::MAX {
            let assigned = matches!(ty, 0 | 3..=6 | 8..=43 | 253 | 254);
            assert_eq!(lookup(Family::V4, ty).is_some(), assigned, "type {ty}");
            if !assigned {
                assert_eq!(type_name(Family::V4, ty), UNASSIGNED);
            }
        }
        let deprecated: [u8; 16] = [4, 6, 15, 16, 17, 18, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39];
        for t in ICMPV4_TYPES {
            assert_eq!(
                t.deprecated,
                deprecated.contains(&t.value),
                "type {}",
                t.value
            );
        }
    }

    #[test]
    fn spot_checks() {
        assert_eq!(
            code_name(Family::V4, 3, 13),
            Some("Communication Administratively Prohibited")
        );
        assert_eq!(
            code_name(Family::V4, 11, 0),
            Some("Time to Live exceeded in Transit")
        );
        assert_eq!(type_name(Family::V4, 0), "Echo Reply");
        assert_eq!(type_name(Family::V4, 8), "Echo");
        assert_eq!(
            code_name(Family::V4, 9, 16),
            Some("Does not route common traffic")
        );
        assert_eq!(code_name(Family::V4, 3, 16), None);
        assert_eq!(code_name(Family::V4, 1, 0), None);
        assert_eq!(code_name(Family::V6, 1, 4), Some("Port unreachable"));
        assert_eq!(code_name(Family::V6, 4, 10), Some("Option too big"));
        assert_eq!(
            code_name(Family::V6, 138, 255),
            Some("Sequence Number Reset")
        );
        assert_eq!(type_name(Family::V6, 129), "Echo Reply");
        assert_eq!(type_name(Family::V6, 128), "Echo Request");
        assert_eq!(type_name(Family::V6, 5), UNASSIGNED);

        let traceroute = lookup(Family::V4, 30).unwrap();
        assert_eq!(traceroute.name, "Traceroute");
        assert!(traceroute.deprecated);
        assert!(traceroute.codes.is_empty());
        assert_eq!(traceroute.reference, "RFC 1393, RFC 6918");
        assert!(!lookup(Family::V4, 3).unwrap().deprecated);
        assert_eq!(lookup(Family::V4, 3).unwrap().codes.len(), 16);
        assert_eq!(lookup(Family::V6, 1).unwrap().codes.len(), 9);
        assert_eq!(lookup(Family::V6, 4).unwrap().codes.len(), 11);
    }

    #[test]
    fn describe_known_and_unknown() {
        assert_eq!(
            describe(Family::V4, 3, 3).as_str(),
            "Destination Unreachable / Port Unreachable"
        );
        assert_eq!(
            describe(Family::V6, 3, 0).as_str(),
            "Time Exceeded / Hop limit exceeded in transit"
        );
        assert_eq!(describe(Family::V4, 77, 3).as_str(), "Type 77 / code 3");
        assert_eq!(describe(Family::V6, 77, 3).as_str(), "Type 77 / code 3");
        assert_eq!(
            describe(Family::V4, 11, 9).as_str(),
            "Time Exceeded / code 9"
        );
        assert_eq!(describe(Family::V4, 0, 0).as_str(), "Echo Reply");
        assert_eq!(describe(Family::V6, 129, 0).as_str(), "Echo Reply");
        assert_eq!(describe(Family::V4, 30, 0).as_str(), "Traceroute");
        assert_eq!(describe(Family::V4, 30, 1).as_str(), "Traceroute / code 1");
    }

    #[test]
    fn error_classification() {
        for ty in [3, 4, 5, 11, 12, 31, 40] {
            assert!(is_error(Family::V4, ty), "v4 type {ty}");
        }
        for ty in [0, 8, 9, 10, 13, 14, 30, 42, 43, 1, 77, 255] {
            assert!(!is_error(Family::V4, ty), "v4 type {ty}");
        }
        for ty in 1..=4 {
            assert!(is_error(Family::V6, ty), "v6 type {ty}");
        }
        assert!(is_error(Family::V6, 77));
        for ty in [128, 129, 135, 160, 255] {
            assert!(!is_error(Family::V6, ty), "v6 type {ty}");
        }
    }

    #[test]
    fn enums_round_trip_every_u8() {
        for v in 0..=u8::MAX {
            assert_eq!(u8::from(Icmpv4Type::from(v)), v);
            assert_eq!(u8::from(Icmpv6Type::from(v)), v);
            assert_eq!(u8::from(Unreachable4::from(v)), v);
            assert_eq!(u8::from(Unreachable6::from(v)), v);
        }
        assert_eq!(Icmpv4Type::from(8), Icmpv4Type::EchoRequest);
        assert_eq!(Icmpv4Type::from(77), Icmpv4Type::Unknown(77));
        assert_eq!(Icmpv6Type::from(137), Icmpv6Type::Redirect);
        assert_eq!(Unreachable4::from(13), Unreachable4::AdminProhibited);
        assert_eq!(Unreachable4::from(16), Unreachable4::Unknown(16));
        assert_eq!(Unreachable6::from(8), Unreachable6::HeadersTooLong);
        assert_eq!(Unreachable6::from(9), Unreachable6::Unknown(9));
    }

    #[test]
    fn enums_agree_with_tables() {
        for v in 0..=u8::MAX {
            if !matches!(Icmpv4Type::from(v), Icmpv4Type::Unknown(_)) {
                assert!(lookup(Family::V4, v).is_some(), "v4 type {v}");
            }
            if !matches!(Icmpv6Type::from(v), Icmpv6Type::Unknown(_)) {
                assert!(lookup(Family::V6, v).is_some(), "v6 type {v}");
            }
            let named4 = !matches!(Unreachable4::from(v), Unreachable4::Unknown(_));
            assert_eq!(named4, code_name(Family::V4, 3, v).is_some(), "v4 code {v}");
            let named6 = !matches!(Unreachable6::from(v), Unreachable6::Unknown(_));
            assert_eq!(named6, code_name(Family::V6, 1, v).is_some(), "v6 code {v}");
        }
    }
}

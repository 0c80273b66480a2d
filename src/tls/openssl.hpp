#pragma once
// RAII owners for the OpenSSL objects pexi::tls creates, and a few helpers around them.
// Every OpenSSL object in this module lives in one of these; nothing is freed by hand.
//
// Thread-safety: the owners behave like std::unique_ptr; the free functions are safe from any
// thread (OpenSSL's error queue is per thread).

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

namespace pexi::tls {

// Calls an OpenSSL `*_free` function: `unique_ptr<X509, Free<X509_free>>`.
template <auto FreeFunction>
struct Free {
  template <class T>
  void operator()(T* object) const noexcept {
    FreeFunction(object);
  }
};

// Memory OpenSSL allocated (OPENSSL_malloc, i2d output); OPENSSL_free is a macro.
struct OpensslFree {
  void operator()(void* memory) const noexcept { OPENSSL_free(memory); }
};
using OpensslBytes = std::unique_ptr<unsigned char, OpensslFree>;

using PkeyPtr = std::unique_ptr<EVP_PKEY, Free<EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, Free<X509_free>>;
using Asn1ObjectPtr = std::unique_ptr<ASN1_OBJECT, Free<ASN1_OBJECT_free>>;
using X509NamePtr = std::unique_ptr<X509_NAME, Free<X509_NAME_free>>;
using X509ExtensionPtr = std::unique_ptr<X509_EXTENSION, Free<X509_EXTENSION_free>>;
using X509StorePtr = std::unique_ptr<X509_STORE, Free<X509_STORE_free>>;
using X509StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, Free<X509_STORE_CTX_free>>;
using BioPtr = std::unique_ptr<BIO, Free<BIO_free_all>>;
using BignumPtr = std::unique_ptr<BIGNUM, Free<BN_free>>;
using GeneralNamesPtr = std::unique_ptr<GENERAL_NAMES, Free<GENERAL_NAMES_free>>;
using GeneralNamePtr = std::unique_ptr<GENERAL_NAME, Free<GENERAL_NAME_free>>;
using Asn1OctetStringPtr = std::unique_ptr<ASN1_OCTET_STRING, Free<ASN1_OCTET_STRING_free>>;
using AuthorityKeyIdPtr = std::unique_ptr<AUTHORITY_KEYID, Free<AUTHORITY_KEYID_free>>;
using SslCtxPtr = std::unique_ptr<SSL_CTX, Free<SSL_CTX_free>>;
using SslPtr = std::unique_ptr<SSL, Free<SSL_free>>;
using SslSessionPtr = std::unique_ptr<SSL_SESSION, Free<SSL_SESSION_free>>;

// A new reference to an object another owner holds (OpenSSL reference counts).
X509Ptr share(X509* cert);
PkeyPtr share(EVP_PKEY* key);

// Drains this thread's OpenSSL error queue into one line ("error:...; error:..."), or
// "no OpenSSL error" when it is empty. Call it right after the failing call.
std::string openssl_errors();

// Gives `cert` a random positive 128-bit serial number (RFC 5280 wants them unique per issuer;
// Firefox rejects two certificates with one issuer and serial). False on failure.
bool set_random_serial(X509* cert);

// PEM text of a certificate; empty on failure.
std::string to_pem(const X509* cert);
// The first certificate in PEM text, or null.
X509Ptr certificate_from_pem(std::string_view pem);

// A certificate time as a system_clock time point (second resolution).
std::chrono::system_clock::time_point to_time_point(const ASN1_TIME* time);

// Upper-case hex SHA-256 of the DER certificate, bytes separated by ':' (as browsers show it).
std::string sha256_fingerprint(const X509* cert);

// RFC 2253 text of a name, e.g. "CN=pexi local CA host 2026-11-23".
std::string name_text(const X509_NAME* name);

}  // namespace pexi::tls

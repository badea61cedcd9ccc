// Korean and English labels. The language is the one chosen with the switch (kept in
// localStorage), else the browser's, else Korean. Elements carrying data-i18n="key" are
// relabelled by apply(); code calls t(key, {name: value}) for text it builds.

const dict = {
  en: {
    brand: 'flashsale',
    'nav.catalogue': 'Catalogue',
    'nav.orders': 'My orders',
    'nav.wishlist': 'Wishlist',
    'nav.profile': 'Profile',
    'nav.login': 'Log in',
    'nav.signup': 'Sign up',
    'nav.logout': 'Log out',
    'live.live': 'Live',
    'live.polling': 'Updating every few seconds',
    'live.connecting': 'Connecting…',
    'live.off': 'Offline',
    'cat.title': 'On sale now and coming up',
    'cat.empty': 'Nothing on sale yet.',
    'stock.available': '{n} left',
    'stock.of': 'of {n}',
    'stock.reserved': 'reserved',
    'stock.sold': 'sold',
    'status.UPCOMING': 'Coming soon',
    'status.ON_SALE': 'On sale',
    'status.SOLD_OUT': 'Sold out',
    'status.PAUSED': 'Paused',
    'status.ENDED': 'Ended',
    'count.starts': 'Starts in {t}',
    'count.ends': 'Ends in {t}',
    'count.pay': 'Pay within {t}',
    'product.buy': 'Buy now',
    'product.limit': 'At most {n} per person',
    'product.wish.add': '♡ Add to wishlist',
    'product.wish.remove': '♥ In your wishlist',
    'product.back': '← Catalogue',
    'product.notfound': 'No such product.',
    'buy.login': 'Log in to buy.',
    'buy.sending': 'Sending your order…',
    'buy.RESERVED': 'Reserved! Pay by {t}.',
    'buy.PENDING': 'In the queue: position {n}. The answer will show here.',
    'buy.SOLD_OUT': 'Sold out — every unit is taken.',
    'buy.INSUFFICIENT_STOCK': 'Not enough stock left.',
    'buy.LIMIT_EXCEEDED': 'You already have the most you may buy.',
    'buy.NOT_ON_SALE': 'This product is not on sale now.',
    'buy.PAUSED': 'The sale is paused. Try again in a moment.',
    'buy.EMAIL_NOT_VERIFIED': 'Verify your e-mail address first.',
    'buy.RATE_LIMITED': 'Too many tries. Wait a second.',
    'buy.UNAVAILABLE': 'The shop could not take your order just now; it was not placed. Try again.',
    'buy.ORDER_TIMED_OUT': 'The shop could not take your order in time; it was not placed. Try again.',
    'buy.TIMED_OUT': 'The shop could not take your order in time; it was not placed. Try again.',
    'buy.ORDER_OUTCOME_UNKNOWN': 'We could not confirm your order. Check “My orders” before trying again.',
    'buy.error': 'Something went wrong ({code}). Your order may have been placed: look in My orders.',
    'order.pay': 'Pay',
    'order.cancel': 'Cancel',
    'order.paying': 'Paying…',
    'order.cancelling': 'Cancelling…',
    'order.history': 'History',
    'order.amount': 'Amount',
    'order.none': 'No orders yet.',
    'order.more': 'More',
    'order.PAYMENT_FAILED': 'The payment was declined; the unit was released.',
    'ostatus.PENDING': 'Waiting for a decision',
    'ostatus.RESERVED': 'Reserved — awaiting payment',
    'ostatus.REJECTED': 'Not reserved',
    'ostatus.PAYING': 'Paying',
    'ostatus.PAID': 'Paid',
    'ostatus.PAYMENT_FAILED': 'Payment failed',
    'ostatus.EXPIRED': 'Expired (not paid in time)',
    'ostatus.CANCELLED': 'Cancelled',
    'ostatus.SHIPPING': 'Shipping',
    'ostatus.DELIVERED': 'Delivered',
    'ostatus.RETURN_REQUESTED': 'Return requested',
    'ostatus.RETURNED': 'Returned',
    'ostatus.NEEDS_ATTENTION': 'Needs attention',
    'auth.email': 'E-mail',
    'auth.password': 'Password',
    'auth.name': 'Name',
    'auth.phone': 'Phone (optional)',
    'auth.code': '6-digit code',
    'auth.signup.title': 'Create an account',
    'auth.signup.submit': 'Sign up',
    'auth.signup.hint': 'At least 10 characters, letters and digits or symbols.',
    'auth.verify.title': 'Verify your e-mail',
    'auth.verify.hint': 'We sent a 6-digit code to {email}.',
    'auth.verify.submit': 'Verify',
    'auth.verify.resend': 'Send a new code',
    'auth.verify.resent': 'If the address has an unverified account, a new code is on its way.',
    'auth.verify.done': 'Verified. You can log in now.',
    'auth.login.title': 'Log in',
    'auth.login.submit': 'Log in',
    'auth.login.noaccount': 'No account yet?',
    'auth.login.unverified': 'Not verified yet?',
    'profile.title': 'Your profile',
    'profile.save': 'Save',
    'profile.saved': 'Saved.',
    'profile.status': 'Status',
    'profile.since': 'Member since',
    'profile.logoutAll': 'Log out everywhere',
    'wish.title': 'Your wishlist',
    'wish.empty': 'Nothing in your wishlist. Tap ♡ on a product to be told when its sale opens.',
    'wish.remove': 'Remove',
    'wish.available': '{n} available',
    'err.INVALID_CREDENTIALS': 'Wrong e-mail or password.',
    'err.EMAIL_TAKEN': 'This e-mail address already has an account.',
    'err.WEAK_PASSWORD': 'The password is too weak: at least 10 characters, letters and digits or symbols.',
    'err.INVALID_CODE': 'Wrong code.',
    'err.CODE_EXPIRED': 'The code has expired: ask for a new one.',
    'err.CODE_LOCKED': 'Too many wrong codes: ask for a new one.',
    'err.ALREADY_VERIFIED': 'Already verified: log in.',
    'err.RATE_LIMITED': 'Too many attempts. Wait a minute.',
    'err.NETWORK': 'The shop cannot be reached. Check your connection.',
    'err.ORDER_OUTCOME_UNKNOWN': 'The shop could not confirm this just now: it may still happen. Check the order before trying again.',
    'err.generic': 'Error: {code}',
    'lang.switch': '한국어',
  },
  ko: {
    brand: 'flashsale',
    'nav.catalogue': '상품',
    'nav.orders': '주문 내역',
    'nav.wishlist': '위시리스트',
    'nav.profile': '내 정보',
    'nav.login': '로그인',
    'nav.signup': '회원가입',
    'nav.logout': '로그아웃',
    'live.live': '실시간',
    'live.polling': '몇 초마다 갱신',
    'live.connecting': '연결 중…',
    'live.off': '오프라인',
    'cat.title': '판매 중 · 판매 예정',
    'cat.empty': '아직 판매 중인 상품이 없습니다.',
    'stock.available': '{n}개 남음',
    'stock.of': '/ {n}',
    'stock.reserved': '예약',
    'stock.sold': '판매',
    'status.UPCOMING': '오픈 예정',
    'status.ON_SALE': '판매 중',
    'status.SOLD_OUT': '품절',
    'status.PAUSED': '일시 중지',
    'status.ENDED': '판매 종료',
    'count.starts': '{t} 후 오픈',
    'count.ends': '{t} 후 종료',
    'count.pay': '{t} 안에 결제',
    'product.buy': '바로 구매',
    'product.limit': '1인당 최대 {n}개',
    'product.wish.add': '♡ 위시리스트에 담기',
    'product.wish.remove': '♥ 위시리스트에 있음',
    'product.back': '← 상품 목록',
    'product.notfound': '없는 상품입니다.',
    'buy.login': '구매하려면 로그인하세요.',
    'buy.sending': '주문을 보내는 중…',
    'buy.RESERVED': '예약 완료! {t}까지 결제하세요.',
    'buy.PENDING': '대기 순번 {n}번. 결과가 여기에 표시됩니다.',
    'buy.SOLD_OUT': '품절 — 모든 수량이 판매되었습니다.',
    'buy.INSUFFICIENT_STOCK': '남은 수량이 부족합니다.',
    'buy.LIMIT_EXCEEDED': '1인당 구매 한도를 넘었습니다.',
    'buy.NOT_ON_SALE': '지금은 판매 기간이 아닙니다.',
    'buy.PAUSED': '판매가 잠시 중지되었습니다. 잠시 후 다시 시도하세요.',
    'buy.EMAIL_NOT_VERIFIED': '먼저 이메일 인증을 해 주세요.',
    'buy.RATE_LIMITED': '요청이 너무 많습니다. 잠시 기다려 주세요.',
    'buy.UNAVAILABLE': '지금은 주문을 받을 수 없습니다. 주문되지 않았으니 다시 시도하세요.',
    'buy.ORDER_TIMED_OUT': '제시간에 주문을 받지 못했습니다. 주문되지 않았으니 다시 시도하세요.',
    'buy.TIMED_OUT': '제시간에 주문을 받지 못했습니다. 주문되지 않았으니 다시 시도하세요.',
    'buy.ORDER_OUTCOME_UNKNOWN': '주문 여부를 확인하지 못했습니다. 다시 시도하기 전에 “주문 내역”을 확인하세요.',
    'buy.error': '오류가 발생했습니다 ({code}). 주문이 접수되었을 수 있으니 주문 내역을 확인하세요.',
    'order.pay': '결제',
    'order.cancel': '취소',
    'order.paying': '결제 중…',
    'order.cancelling': '취소 중…',
    'order.history': '상태 이력',
    'order.amount': '금액',
    'order.none': '주문 내역이 없습니다.',
    'order.more': '더 보기',
    'order.PAYMENT_FAILED': '결제가 거절되어 예약이 해제되었습니다.',
    'ostatus.PENDING': '처리 대기',
    'ostatus.RESERVED': '예약됨 — 결제 대기',
    'ostatus.REJECTED': '예약 실패',
    'ostatus.PAYING': '결제 진행 중',
    'ostatus.PAID': '결제 완료',
    'ostatus.PAYMENT_FAILED': '결제 실패',
    'ostatus.EXPIRED': '결제 기한 만료',
    'ostatus.CANCELLED': '취소됨',
    'ostatus.SHIPPING': '배송 중',
    'ostatus.DELIVERED': '배송 완료',
    'ostatus.RETURN_REQUESTED': '반품 요청',
    'ostatus.RETURNED': '반품 완료',
    'ostatus.NEEDS_ATTENTION': '확인 필요',
    'auth.email': '이메일',
    'auth.password': '비밀번호',
    'auth.name': '이름',
    'auth.phone': '전화번호 (선택)',
    'auth.code': '6자리 인증 코드',
    'auth.signup.title': '회원가입',
    'auth.signup.submit': '가입하기',
    'auth.signup.hint': '10자 이상, 문자와 숫자 또는 기호를 섞어 주세요.',
    'auth.verify.title': '이메일 인증',
    'auth.verify.hint': '{email}(으)로 6자리 코드를 보냈습니다.',
    'auth.verify.submit': '인증하기',
    'auth.verify.resend': '코드 다시 받기',
    'auth.verify.resent': '인증되지 않은 계정이 있으면 새 코드가 발송됩니다.',
    'auth.verify.done': '인증되었습니다. 이제 로그인하세요.',
    'auth.login.title': '로그인',
    'auth.login.submit': '로그인',
    'auth.login.noaccount': '계정이 없으신가요?',
    'auth.login.unverified': '아직 인증하지 않으셨나요?',
    'profile.title': '내 정보',
    'profile.save': '저장',
    'profile.saved': '저장되었습니다.',
    'profile.status': '상태',
    'profile.since': '가입일',
    'profile.logoutAll': '모든 기기에서 로그아웃',
    'wish.title': '위시리스트',
    'wish.empty': '위시리스트가 비어 있습니다. 상품의 ♡를 누르면 판매 오픈 때 알려 드립니다.',
    'wish.remove': '삭제',
    'wish.available': '{n}개 구매 가능',
    'err.INVALID_CREDENTIALS': '이메일 또는 비밀번호가 틀렸습니다.',
    'err.EMAIL_TAKEN': '이미 가입된 이메일입니다.',
    'err.WEAK_PASSWORD': '비밀번호가 너무 약합니다: 10자 이상, 문자와 숫자 또는 기호.',
    'err.INVALID_CODE': '코드가 틀렸습니다.',
    'err.CODE_EXPIRED': '코드가 만료되었습니다. 새 코드를 받으세요.',
    'err.CODE_LOCKED': '틀린 시도가 너무 많습니다. 새 코드를 받으세요.',
    'err.ALREADY_VERIFIED': '이미 인증되었습니다. 로그인하세요.',
    'err.ORDER_OUTCOME_UNKNOWN': '처리 여부를 지금 확인하지 못했습니다. 곧 반영될 수도 있으니 다시 시도하기 전에 주문을 확인하세요.',
    'err.RATE_LIMITED': '시도가 너무 많습니다. 잠시 후 다시 시도하세요.',
    'err.NETWORK': '서버에 연결할 수 없습니다. 네트워크를 확인하세요.',
    'err.generic': '오류: {code}',
    'lang.switch': 'English',
  },
};

let lang = pick();

function pick() {
  const saved = localStorage.getItem('flashsale.lang');
  if (saved === 'ko' || saved === 'en') return saved;
  return (navigator.language || 'ko').toLowerCase().startsWith('ko') ? 'ko' : 'en';
}

/** Adds a module's own labels (the console's) to both languages. */
export function extend(more) {
  for (const l of Object.keys(more)) Object.assign(dict[l], more[l]);
}

export function language() {
  return lang;
}

export function setLanguage(l) {
  lang = l === 'en' ? 'en' : 'ko';
  localStorage.setItem('flashsale.lang', lang);
  document.documentElement.lang = lang;
  apply();
}

export function t(key, vars = {}) {
  const s = dict[lang][key] ?? dict.en[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (_, k) => (vars[k] ?? `{${k}}`));
}

/** Has a label for key (e.g. a server code with a message of its own). */
export function has(key) {
  return key in dict[lang] || key in dict.en;
}

export function apply(root = document) {
  document.documentElement.lang = lang;
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-placeholder]')) el.placeholder = t(el.dataset.i18nPlaceholder);
}

export function money(amount, currency = 'KRW') {
  try {
    return new Intl.NumberFormat(lang === 'ko' ? 'ko-KR' : 'en-US', { style: 'currency', currency }).format(amount);
  } catch {
    return `${amount} ${currency}`;
  }
}

export function when(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString(lang === 'ko' ? 'ko-KR' : 'en-GB');
}

/** "2d 03:04:05" / "03:04:05" / "04:05" for a number of milliseconds. */
export function duration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const d = Math.floor(s / 86400);
  const hh = String(Math.floor((s % 86400) / 3600)).padStart(2, '0');
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, '0');
  const ss = String(s % 60).padStart(2, '0');
  if (d) return `${d}${lang === 'ko' ? '일' : 'd'} ${hh}:${mm}:${ss}`;
  return s >= 3600 ? `${hh}:${mm}:${ss}` : `${mm}:${ss}`;
}

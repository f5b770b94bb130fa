/**
 * Getting the person's attention when a request arrives: a short two-tone chime and, if they allowed
 * it, a system notification. Browsers only play sound after the user has interacted with the page,
 * and permission is asked for from a button, never on load.
 */
let audio: AudioContext | undefined;

export function armChimeOnFirstInteraction(): void {
  const arm = () => {
    audio ??= new AudioContext();
    removeEventListener("pointerdown", arm);
    removeEventListener("keydown", arm);
  };
  addEventListener("pointerdown", arm);
  addEventListener("keydown", arm);
}

export function chime(): void {
  const context = audio;
  if (context === undefined) return;
  [660, 880].forEach((frequency, i) => {
    const at = context.currentTime + i * 0.15;
    const oscillator = new OscillatorNode(context, { frequency });
    const gain = new GainNode(context, { gain: 0.2 });
    gain.gain.exponentialRampToValueAtTime(0.001, at + 0.15);
    oscillator.connect(gain).connect(context.destination);
    oscillator.start(at);
    oscillator.stop(at + 0.15);
  });
}

/** Shows the "Enable notifications" button while the browser has not been asked yet. */
export function offerNotifications(button: HTMLButtonElement): void {
  if (!("Notification" in window)) return;
  const refresh = () => (button.hidden = Notification.permission !== "default");
  refresh();
  button.addEventListener("click", () => void Notification.requestPermission().then(refresh));
}

export function notify(title: string, body: string): void {
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  new Notification(title, { body });
}

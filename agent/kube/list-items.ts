// Pure: splits a Kubernetes list (`{"kind":..,"metadata":{..},"items":[{..},{..}]}`) into its items as
// the text arrives, chunk by chunk, so each item is parsed and reduced on its own and neither the whole
// page's text nor its parsed tree is ever held (docs/design.md: the pod watcher's memory). What is not
// an item (kind, metadata with resourceVersion and continue) is kept as `rest()`, with `"items":[]`.

/** How long one item may be before the list is refused (a pod is a few KiB; etcd's limit is 1.5 MiB). */
export const MAX_ITEM_CHARS = 4 * 1024 * 1024;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_OBJ = 0x7b;
const CLOSE_OBJ = 0x7d;
const OPEN_ARR = 0x5b;
const CLOSE_ARR = 0x5d;

export class ListItemSplitter {
  private depth = 0;
  private inString = false;
  private escaped = false;
  /** The text of the current string at depth 1 (a key of the list object), capped. */
  private key = '';
  private lastKey = '';
  /** True between the `[` and `]` of the top-level "items". */
  private inItems = false;
  /** The current item's text so far (chunks of it), while inside one. */
  private item: string[] | undefined;
  private itemChars = 0;
  private restParts: string[] = [];
  items = 0;

  constructor(
    private readonly onItem: (text: string) => void,
    private readonly maxItemChars = MAX_ITEM_CHARS,
  ) {}

  /** Feeds the next piece of the text; calls onItem for each item it completes. Throws on an oversized item. */
  write(chunk: string): void {
    let restFrom = this.item || this.inItems ? -1 : 0;
    let itemFrom = this.item ? 0 : -1;
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk.charCodeAt(i);
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === BACKSLASH) this.escaped = true;
        else if (c === QUOTE) {
          this.inString = false;
          if (this.depth === 1) this.lastKey = this.key;
        } else if (this.depth === 1 && this.key.length < 16) this.key += chunk[i];
        continue;
      }
      if (c === QUOTE) {
        this.inString = true;
        this.key = '';
      } else if (c === OPEN_OBJ || c === OPEN_ARR) {
        if (this.inItems && this.depth === 2 && !this.item) {
          this.item = [];
          this.itemChars = 0;
          itemFrom = i;
        }
        this.depth++;
        if (this.depth === 2 && c === OPEN_ARR && this.lastKey === 'items' && !this.inItems) {
          // Keep `"items":[` in the rest; what follows up to the matching `]` is items only.
          this.inItems = true;
          this.restParts.push(chunk.slice(restFrom, i + 1));
          restFrom = -1;
        }
      } else if (c === CLOSE_OBJ || c === CLOSE_ARR) {
        this.depth--;
        if (this.item && this.depth === 2) {
          this.item.push(chunk.slice(itemFrom, i + 1));
          const text = this.item.join('');
          this.item = undefined;
          itemFrom = -1;
          this.items++;
          this.onItem(text);
        } else if (this.inItems && this.depth === 1) {
          this.inItems = false;
          restFrom = i;
        }
      }
    }
    if (this.item && itemFrom >= 0) {
      const part = chunk.slice(itemFrom);
      this.itemChars += part.length;
      if (this.itemChars > this.maxItemChars) throw new RangeError(`a list item longer than ${this.maxItemChars} characters`);
      this.item.push(part);
    }
    if (restFrom >= 0) {
      this.restParts.push(chunk.slice(restFrom));
      if (this.restParts.length > 64) this.restParts = [this.restParts.join('')];
      if (this.restParts.length === 1 && this.restParts[0]!.length > this.maxItemChars) throw new RangeError(`a list whose metadata is longer than ${this.maxItemChars} characters`);
    }
  }

  /** Everything but the items, as text: `{"kind":"PodList","metadata":{...},"items":[]}`. */
  rest(): string {
    return this.restParts.join('');
  }
}
